"""Construction from raw arrays checks every invariant and names the broken one."""

import pytest
import torch

from sparsetorch.formats import BSR, COO, CSR, NM


def i32(*values):
    return torch.tensor(values, dtype=torch.int32)


def f32(*values):
    return torch.tensor(values, dtype=torch.float32)


@pytest.mark.parametrize(
    ("row_ptr", "cols", "shape", "message"),
    [
        (i32(0, 1, 2), i32(0, 1), (3, 2), r"len\(row_ptr\) == rows \+ 1 \(3 != 4\)"),
        (i32(1, 1, 2), i32(0, 1), (2, 2), r"row_ptr\[0\] == 0 \(row_ptr\[0\] = 1\)"),
        (i32(0, 1, 1), i32(0, 1), (2, 2), r"row_ptr\[-1\] == nnz \(row_ptr\[-1\] = 1, nnz = 2\)"),
        (
            i32(0, 2, 1, 2),
            i32(0, 1),
            (3, 2),
            r"row_ptr is non-decreasing \(row_ptr\[1\] = 2 > row_ptr\[2\] = 1\)",
        ),
        (i32(0, 1, 2), i32(0, 2), (2, 2), r"0 <= col_indices < 2 \(col_indices\[1\] = 2\)"),
        (i32(0, 1, 2), i32(-1, 0), (2, 2), r"0 <= col_indices < 2 \(col_indices\[0\] = -1\)"),
        (i32(0, 2), i32(1, 0), (1, 2), "col_indices strictly increase within each row"),
        (
            i32(0, 2),
            i32(1, 1),
            (1, 2),
            r"col_indices strictly increase .* \(col_indices\[0\] = 1, col_indices\[1\] = 1 in one row\)",
        ),
    ],
)
def test_csr_invariants(row_ptr, cols, shape, message):
    with pytest.raises(ValueError, match="CSR invariant violated: " + message):
        CSR(row_ptr, cols, torch.ones(cols.numel()), shape)


def test_csr_allows_a_column_drop_across_rows():
    # col 1 then col 0 is fine when the second entry starts a new row (even after empty rows)
    csr = CSR(i32(0, 1, 1, 2), i32(1, 0), f32(1, 2), (3, 2))
    assert csr.to_dense().tolist() == [[0, 1], [0, 0], [2, 0]]


def test_csr_argument_types_and_shapes():
    with pytest.raises(
        TypeError, match=r"col_indices must be an int32 or int64 tensor, got torch.float32"
    ):
        CSR(i32(0, 1), f32(0), f32(1), (1, 1))
    with pytest.raises(TypeError, match=r"values must have a floating dtype .*got torch.int64"):
        CSR(i32(0, 1), i32(0), torch.tensor([1]), (1, 1))
    with pytest.raises(ValueError, match=r"values must be 1-D like col_indices \(1,\), got \(2,\)"):
        CSR(i32(0, 1), i32(0), f32(1, 2), (1, 1))
    with pytest.raises(ValueError, match=r"shape must be 2 non-negative ints, got \(1, -1\)"):
        CSR(i32(0, 0), i32(), f32(), (1, -1))


@pytest.mark.parametrize(
    ("indices", "shape", "message"),
    [
        ([[0, 2], [0, 0]], (2, 2), r"0 <= row < 2 \(indices\[0, 1\] = 2\)"),
        ([[0, 1], [0, 3]], (2, 2), r"0 <= col < 2 \(indices\[1, 1\] = 3\)"),
        (
            [[1, 0], [0, 0]],
            (2, 2),
            r"entries sorted row-major without duplicates \(entry 1 \(0, 0\) does not follow entry 0 \(1, 0\)\)",
        ),
        (
            [[0, 0], [1, 1]],
            (2, 2),
            r"entries sorted row-major .* \(entry 1 \(0, 1\) does not follow entry 0 \(0, 1\)\)",
        ),
    ],
)
def test_coo_invariants(indices, shape, message):
    with pytest.raises(ValueError, match="COO invariant violated: " + message):
        COO(torch.tensor(indices), f32(1, 2), shape)


def test_bsr_invariants_and_blocksize():
    blocks = torch.ones(2, 2, 2)
    with pytest.raises(ValueError, match=r"BSR invariant violated: col_indices strictly increase"):
        BSR(i32(0, 2), i32(1, 0), blocks, (2, 4))
    with pytest.raises(ValueError, match=r"BSR invariant violated: 0 <= col_indices < 2"):
        BSR(i32(0, 1, 2), i32(0, 2), blocks, (4, 4))
    with pytest.raises(
        ValueError,
        match=r"BSR blocksize \(2, 2\) must divide the shape \(3, 4\); pad .* to \(4, 4\)",
    ):
        BSR(i32(0, 2), i32(0, 1), blocks, (3, 4))
    with pytest.raises(ValueError, match=r"BSR blocksize \(3, 3\) must divide the shape \(4, 4\)"):
        BSR.from_dense(torch.ones(4, 4), (3, 3))
    with pytest.raises(
        ValueError, match=r"blocksize must be two positive ints \(h, w\), got \(0, 2\)"
    ):
        BSR.from_dense(torch.ones(4, 4), (0, 2))
    with pytest.raises(ValueError, match=r"values must be blocks \(nblocks=2, h, w\)"):
        BSR(i32(0, 2), i32(0, 1), torch.ones(2, 4), (2, 4))


def test_nm_invariants():
    values = torch.ones(1, 4)
    with pytest.raises(
        ValueError, match=r"NM invariant violated: 0 <= indices < m=4 \(indices\[0, 3\] = 4\)"
    ):
        NM(values, torch.tensor([[0, 1, 2, 4]]), (1, 8), 2, 4)
    with pytest.raises(
        ValueError,
        match=r"positions of a group strictly increase .* \(row \(0,\) group 1: \[3, 3\]\)",
    ):
        NM(values, torch.tensor([[0, 1, 3, 3]]), (1, 8), 2, 4)
    with pytest.raises(ValueError, match=r"group 0: \[2, 1\]"):
        NM(values, torch.tensor([[2, 1, 0, 1]]), (1, 8), 2, 4)
    with pytest.raises(ValueError, match=r"must both have shape \(1, 4\) for 2:4 of \(1, 8\)"):
        NM(torch.ones(1, 3), torch.zeros(1, 3, dtype=torch.long), (1, 8), 2, 4)
    with pytest.raises(ValueError, match=r"N:M needs ints 1 <= n <= m <= 256, got n=5, m=4"):
        NM.from_dense(torch.zeros(1, 4), 5, 4)


def test_nm_row_length_must_be_a_multiple_of_m():
    with pytest.raises(
        ValueError, match=r"last dim 6 is not a multiple of 4; pad each row with 2 zeros"
    ):
        NM.from_dense(torch.zeros(3, 6), 2, 4)  # a naive flattening would let groups straddle rows


@pytest.mark.parametrize("fmt", [CSR, COO])
def test_from_dense_rejects_bad_input(fmt):
    with pytest.raises(
        ValueError, match=r"takes a 2-D tensor \(rows, cols\), got 3-D shape \(2, 2, 2\); reshape"
    ):
        fmt.from_dense(torch.ones(2, 2, 2))
    with pytest.raises(ValueError, match="got 1-D"):
        fmt.from_dense(torch.ones(3))
    with pytest.raises(TypeError, match="floating dtype"):
        fmt.from_dense(torch.ones(2, 2, dtype=torch.int64))
    with pytest.raises(TypeError, match=r"must be a torch.Tensor, got list"):
        fmt.from_dense([[1.0]])
    with pytest.raises(TypeError, match="dense"):
        fmt.from_dense(torch.eye(2).to_sparse())
    with pytest.raises(ValueError, match="NM needs a tensor of at least 2 dims"):
        NM.from_dense(torch.ones(4))


def test_arrays_on_different_devices_are_rejected():
    meta = torch.empty(0, device="meta")
    with pytest.raises(ValueError, match="CSR arrays must share one device"):
        CSR(i32(0), i32(), meta, (0, 0))
