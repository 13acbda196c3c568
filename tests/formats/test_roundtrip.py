"""from_dense(t).to_dense() is bitwise t (up to -0.0 -> +0.0), and conversions are lossless."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsetorch.formats import BSR, COO, CSR, NM
from tests.formats.strategies import bits, canonical, matrices, nm_matrices

SETTINGS = settings(max_examples=40, deadline=None)
BLOCKS = st.sampled_from([(1, 1), (2, 2), (1, 3), (4, 2)])


@SETTINGS
@given(t=matrices(), fmt=st.sampled_from([CSR, COO]))
def test_csr_coo_round_trip_bitwise(t, fmt):
    out = fmt.from_dense(t).to_dense()
    assert out.dtype == t.dtype and out.shape == t.shape
    assert torch.equal(bits(out), bits(canonical(t)))  # NaN/inf/subnormals bit for bit


@SETTINGS
@given(data=st.data(), blocksize=BLOCKS)
def test_bsr_round_trip_bitwise(data, blocksize):
    t = data.draw(matrices(row_multiple=blocksize[0], col_multiple=blocksize[1]))
    bsr = BSR.from_dense(t, blocksize)
    # zeros inside stored blocks keep their sign; zeros elsewhere come back as +0.0
    assert torch.equal(bits(canonical(bsr.to_dense())), bits(canonical(t)))
    assert bsr.nblocks == int(
        (
            t.reshape(
                t.shape[0] // blocksize[0], blocksize[0], t.shape[1] // blocksize[1], blocksize[1]
            )
            != 0
        )
        .any(3)
        .any(1)
        .sum()
    )


@SETTINGS
@given(data=st.data(), nm=st.sampled_from([(1, 2), (2, 4), (1, 4), (3, 8), (4, 16), (2, 3)]))
def test_nm_round_trip_bitwise_batched(data, nm):
    n, m = nm
    t = data.draw(nm_matrices(n, m, batch=data.draw(st.booleans())))
    out = NM.from_dense(t, n=n, m=m)
    assert out.values.shape == (*t.shape[:-1], t.shape[-1] // m * n)
    assert torch.equal(bits(canonical(out.to_dense())), bits(canonical(t)))


@SETTINGS
@given(t=matrices(row_multiple=2, col_multiple=4))
def test_conversions_between_formats_are_lossless(t):
    csr = CSR.from_dense(t)
    want = bits(canonical(t))
    assert torch.equal(bits(csr.to_coo().to_dense()), want)
    assert torch.equal(bits(COO.from_dense(t).to_csr().to_dense()), want)
    bsr = csr.to_bsr((2, 4))
    ref = BSR.from_dense(t, (2, 4))
    assert torch.equal(bsr.row_ptr, ref.row_ptr) and torch.equal(bsr.col_indices, ref.col_indices)
    assert torch.equal(bits(canonical(bsr.values)), bits(canonical(ref.values)))
    assert torch.equal(bits(bsr.to_csr().to_dense()), want)
    back = bsr.to_csr()  # zeros inside blocks are dropped again
    assert torch.equal(back.row_ptr, csr.row_ptr) and torch.equal(back.col_indices, csr.col_indices)
    assert torch.equal(bits(bsr.to_bsr((1, 2)).to_dense()), want)
    assert torch.equal(bits(COO.from_dense(t).to_bsr((2, 2)).to_dense()), want)


@SETTINGS
@given(data=st.data())
def test_nm_converts_to_and_from_other_formats(data):
    t = data.draw(nm_matrices(2, 4))
    nm = NM.from_dense(t)
    csr = nm.to_csr()
    assert csr.nnz == int((t != 0).sum())  # padding slots are not entries
    assert torch.equal(bits(csr.to_dense()), bits(canonical(t)))
    assert torch.equal(bits(canonical(csr.to_nm(2, 4).to_dense())), bits(canonical(t)))
    assert nm.to_nm(2, 4) is nm
    assert torch.equal(bits(canonical(nm.to_nm(3, 4).to_dense())), bits(canonical(t)))


def test_dense_to_nm_only_when_the_constraint_holds():
    t = torch.tensor([[1.0, 2.0, 3.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match=r"not 2:4 sparse: group 0 of row \(0,\) holds 3"):
        NM.from_dense(t, n=2, m=4)
    with pytest.raises(ValueError, match="not 2:4"):
        CSR.from_dense(t).to_nm(2, 4)
    assert torch.equal(CSR.from_dense(t).to_nm(3, 4).to_dense(), t)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_all_zero_and_empty_matrices(dtype):
    for shape in [(0, 0), (0, 4), (4, 0), (4, 8)]:
        z = torch.zeros(shape, dtype=dtype)
        for fmt in (
            CSR.from_dense(z),
            COO.from_dense(z),
            NM.from_dense(z),
            BSR.from_dense(z, (2, 4)),
        ):
            assert fmt.nnz == (z.numel() // 2 if isinstance(fmt, NM) else 0)
            assert torch.equal(fmt.to_dense(), z) and fmt.to_dense().dtype == dtype
            assert fmt.density == (0.5 if isinstance(fmt, NM) and z.numel() else 0.0)
