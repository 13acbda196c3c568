"""to_torch/from_torch and to_scipy/from_scipy are exact; torch and scipy agree with us."""

import numpy as np
import pytest
import scipy.sparse
import torch
from hypothesis import given, settings

from sparsetorch.formats import BSR, COO, CSR
from tests.formats.strategies import bits, canonical, matrices

SETTINGS = settings(max_examples=30, deadline=None)


@SETTINGS
@given(t=matrices(row_multiple=2, col_multiple=2))
def test_torch_round_trip(t):
    want = bits(canonical(t))

    def same_values(theirs):  # torch's own to_dense may canonicalise NaN payloads
        torch.testing.assert_close(theirs, canonical(t), rtol=0, atol=0, equal_nan=True)

    csr = CSR.from_dense(t)
    tc = csr.to_torch()
    assert tc.layout == torch.sparse_csr and tc.crow_indices().dtype == torch.int32
    same_values(tc.to_dense())
    assert torch.equal(bits(CSR.from_torch(tc).to_dense()), want)
    assert torch.equal(bits(CSR.from_torch(t.to_sparse_csr()).to_dense()), want)
    coo = COO.from_dense(t).to_torch()
    assert coo.is_coalesced()
    same_values(coo.to_dense())
    assert torch.equal(bits(COO.from_torch(t.to_sparse()).to_dense()), want)
    bsr = BSR.from_dense(t, (2, 2))
    same_values(bsr.to_torch().to_dense())
    theirs = BSR.from_torch(t.to_sparse_bsr((2, 2)))
    assert torch.equal(theirs.row_ptr, bsr.row_ptr) and torch.equal(
        theirs.col_indices, bsr.col_indices
    )


@SETTINGS
@given(t=matrices(dtype=torch.float32, row_multiple=2, col_multiple=2))
def test_scipy_round_trip_and_agreement(t):
    want = bits(canonical(t))
    dense = t.numpy()
    for ours, theirs in [
        (CSR.from_dense(t), scipy.sparse.csr_array(dense)),
        (COO.from_dense(t), scipy.sparse.coo_array(dense)),
        (BSR.from_dense(t, (2, 2)), scipy.sparse.bsr_array(dense, blocksize=(2, 2))),
    ]:
        mine = ours.to_scipy()
        assert mine.format == theirs.format and mine.nnz == theirs.nnz  # scipy counts the same
        np.testing.assert_array_equal(mine.toarray(), canonical(t).numpy())
        back = type(ours).from_scipy(theirs)
        assert torch.equal(bits(back.to_dense()), want) or isinstance(ours, BSR)
        assert torch.equal(bits(canonical(back.to_dense())), want)


def test_from_scipy_sums_duplicates_and_sorts_without_touching_the_input():
    a = scipy.sparse.coo_array(
        (
            np.array([1.0, 2.0, 5.0, 3.0], np.float32),
            (np.array([1, 0, 1, 1]), np.array([2, 1, 2, 0])),
        ),
        shape=(2, 3),
    )
    csr = CSR.from_scipy(a)
    assert csr.col_indices.tolist() == [1, 0, 2] and csr.values.tolist() == [2, 3, 6]
    assert COO.from_scipy(a).indices.tolist() == [[0, 1, 1], [1, 0, 2]]
    assert a.nnz == 4  # the caller's matrix is unchanged
    unsorted = scipy.sparse.csr_array(
        (np.array([1.0, 2.0], np.float32), np.array([2, 0]), np.array([0, 2])), shape=(1, 3)
    )
    assert CSR.from_scipy(unsorted).col_indices.tolist() == [0, 2]
    bsr = BSR.from_scipy(scipy.sparse.csr_array(np.eye(4, dtype=np.float32)), blocksize=(2, 2))
    assert bsr.nblocks == 2 and torch.equal(bsr.to_dense(), torch.eye(4))


def test_interop_errors():
    t = torch.eye(4)
    with pytest.raises(
        TypeError, match=r"CSR.from_torch takes layout torch.sparse_csr.*to_sparse_csr"
    ):
        CSR.from_torch(t)
    with pytest.raises(TypeError, match=r"COO.from_torch takes layout torch.sparse_coo"):
        COO.from_torch(t.to_sparse_csr())
    with pytest.raises(TypeError, match=r"BSR.from_torch takes layout torch.sparse_bsr"):
        BSR.from_torch(t.to_sparse())
    with pytest.raises(TypeError, match=r"scipy.sparse holds float32/float64 values.*bfloat16"):
        CSR.from_dense(t.bfloat16()).to_scipy()
    with pytest.raises(TypeError, match=r"torch.float16"):
        COO.from_dense(t.half()).to_scipy()
    with pytest.raises(TypeError, match=r"from_scipy takes a scipy.sparse array"):
        CSR.from_scipy(t.numpy())
    with pytest.raises(TypeError, match="float32/float64 values, got int64"):
        CSR.from_scipy(scipy.sparse.csr_array(np.eye(2, dtype=np.int64)))
    with pytest.raises(ValueError, match="blocksize is required to convert a scipy csr"):
        BSR.from_scipy(scipy.sparse.csr_array(t.numpy()))


def test_to_torch_shares_memory():
    csr = CSR.from_dense(torch.eye(3))
    assert csr.to_torch().values().data_ptr() == csr.values.data_ptr()
    bsr = BSR.from_dense(torch.eye(4), (2, 2))
    assert bsr.to_torch().values().data_ptr() == bsr.values.data_ptr()


@pytest.mark.gpu
def test_formats_on_cuda():
    t = torch.randn(64, 64, device="cuda")
    t[t.abs() < 1] = 0
    x = torch.randn(64, 8, device="cuda")
    for fmt in (CSR.from_dense(t), COO.from_dense(t), BSR.from_dense(t, (4, 4))):
        assert fmt.device.type == "cuda" and torch.equal(fmt.to_dense(), t)
        torch.testing.assert_close(fmt @ x, t @ x, rtol=1e-4, atol=1e-4)
