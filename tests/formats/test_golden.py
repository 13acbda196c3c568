"""Small examples worked by hand (the textbook CSR/COO/N:M definitions)."""

import torch

from sparsetorch.formats import BSR, COO, CSR, NM

# the classic 4x4 CSR example: one nonzero per row
A4 = torch.tensor(
    [[5.0, 0, 0, 0], [0, 8, 0, 0], [0, 0, 3, 0], [0, 6, 0, 0]],
)
# 4x6 with rows of 2, 2, 3 and 1 nonzeros
A46 = torch.tensor(
    [
        [10.0, 20, 0, 0, 0, 0],
        [0, 30, 0, 40, 0, 0],
        [0, 0, 50, 60, 70, 0],
        [0, 0, 0, 0, 0, 80],
    ]
)


def test_csr_of_the_4x4_example():
    csr = CSR.from_dense(A4)
    assert csr.values.tolist() == [5, 8, 3, 6]
    assert csr.col_indices.tolist() == [0, 1, 2, 1]
    assert csr.row_ptr.tolist() == [0, 1, 2, 3, 4]
    assert csr.col_indices.dtype == csr.row_ptr.dtype == torch.int32
    # storage O(nnz + rows): 4 values + 4 col indices + 5 row pointers, 4 bytes each
    assert csr.nbytes == 4 * 4 + 4 * 4 + 5 * 4
    assert (csr.nnz, csr.density, csr.shape) == (4, 0.25, (4, 4))


def test_csr_of_the_4x6_example_with_an_empty_row():
    csr = CSR.from_dense(A46)
    assert csr.values.tolist() == [10, 20, 30, 40, 50, 60, 70, 80]
    assert csr.col_indices.tolist() == [0, 1, 1, 3, 2, 3, 4, 5]
    assert csr.row_ptr.tolist() == [0, 2, 4, 7, 8]
    empty_row = torch.zeros(3, 4)
    empty_row[0, 1], empty_row[2, 3] = 1.0, 2.0
    assert CSR.from_dense(empty_row).row_ptr.tolist() == [0, 1, 1, 2]


def test_coo_is_three_numbers_per_nonzero():
    coo = COO.from_dense(A46)
    assert coo.indices.tolist() == [[0, 0, 1, 1, 2, 2, 2, 3], [0, 1, 1, 3, 2, 3, 4, 5]]
    assert coo.nbytes == 3 * coo.nnz * 4  # "3 x nnz" numbers of storage, int32 indices


def test_bsr_of_the_4x6_example():
    bsr = BSR.from_dense(A46, blocksize=(2, 2))
    assert bsr.row_ptr.tolist() == [0, 2, 4]
    assert bsr.col_indices.tolist() == [0, 1, 1, 2]
    assert bsr.values.tolist() == [
        [[10, 20], [0, 30]],
        [[0, 0], [0, 40]],
        [[50, 60], [0, 0]],
        [[70, 0], [0, 80]],
    ]
    assert (bsr.nblocks, bsr.nnz, bsr.blocksize) == (4, 16, (2, 2))
    assert bsr.nbytes == 16 * 4 + 4 * 4 + 3 * 4


def test_nm_of_the_six_valid_2_4_patterns():
    # the six valid 2:4 patterns, one per row, values 1..12
    patterns = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    dense = torch.zeros(6, 4)
    for r, (a, b) in enumerate(patterns):
        dense[r, a], dense[r, b] = 2 * r + 1, 2 * r + 2
    nm = NM.from_dense(dense, n=2, m=4)
    assert nm.values.tolist() == [[2 * r + 1, 2 * r + 2] for r in range(6)]
    assert nm.indices.tolist() == [list(p) for p in patterns]
    # 2 bits per position, first slot in the low bits: a | b << 2
    assert nm.meta.flatten().tolist() == [a | b << 2 for a, b in patterns]
    assert nm.meta.dtype == torch.uint8
    assert nm.nbytes == 6 * 2 * 4 + 6 * 1
    assert torch.equal(nm.to_dense(), dense)


def test_nm_pads_a_group_with_fewer_nonzeros_at_free_positions():
    dense = torch.tensor([[0.0, 0, 7, 0, 0, 0, 0, 0]])  # group 0 holds 1 nonzero, group 1 none
    nm = NM.from_dense(dense, n=2, m=4)
    assert nm.indices.tolist() == [[0, 2, 0, 1]]
    assert nm.values.tolist() == [[0, 7, 0, 0]]
    assert nm.nnz == 4 and nm.density == 0.5
