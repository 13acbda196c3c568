"""``x @ dense`` equals the dense product (float64 reference), scipy, and the reference twins."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsetorch.formats import BSR, COO, CSR, NM
from tests.formats.strategies import matrices, nm_matrices

SETTINGS = settings(max_examples=30, deadline=None)
# per-dtype relative error bound against sum |a||x| (output rounding of the dtype, x2)
TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def encodings(t):
    """Every format that can hold ``t`` (rows/cols multiples of 2/4)."""
    yield CSR.from_dense(t)
    yield COO.from_dense(t)
    yield BSR.from_dense(t, (2, 4))
    yield BSR.from_dense(t, (1, 1))
    if t.shape[1] % 4 == 0 and (t.reshape(-1, 4) != 0).sum(1).le(2).all():
        yield NM.from_dense(t, 2, 4)


def assert_close_to_dense(y, t, x):
    exact = t.double() @ x.double()
    bound = TOL[t.dtype] * (t.double().abs() @ x.double().abs()) + 1e-30
    assert y.dtype == t.dtype and y.shape == exact.shape
    assert ((y.double() - exact).abs() <= bound).all()


def operand(data, t, vector):
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31 - 1)))
    k = data.draw(st.integers(0, 5))
    shape = (t.shape[1],) if vector else (t.shape[1], k)
    return torch.randn(shape, generator=g).to(t.dtype)


@SETTINGS
@given(data=st.data(), vector=st.booleans())
def test_matmul_equals_dense(data, vector):
    t = data.draw(matrices(row_multiple=2, col_multiple=4, specials=False))
    x = operand(data, t, vector)
    for fmt in encodings(t):
        assert_close_to_dense(fmt @ x, t, x)


@SETTINGS
@given(data=st.data(), vector=st.booleans())
def test_nm_matmul_equals_dense(data, vector):
    t = data.draw(nm_matrices(2, 4, specials=False))
    x = operand(data, t, vector)
    assert_close_to_dense(NM.from_dense(t) @ x, t, x)


@SETTINGS
@given(data=st.data())
def test_matmul_equals_scipy(data):
    # scipy.sparse holds float32/float64 only
    t = data.draw(matrices(dtype=torch.float32, row_multiple=2, col_multiple=4, specials=False))
    x = operand(data, t, vector=False)
    for fmt in encodings(t):
        theirs = fmt.to_scipy() @ x.double().numpy()  # scipy in float64
        bound = TOL[t.dtype] * (t.double().abs() @ x.double().abs()).numpy() + 1e-30
        assert np.all(np.abs((fmt @ x).double().numpy() - theirs) <= bound)


@SETTINGS
@given(data=st.data())
def test_torch_kernels_agree_with_our_paths(data):
    t = data.draw(matrices(dtype=torch.float32, row_multiple=2, col_multiple=2, specials=False))
    x = operand(data, t, vector=False)
    csr, bsr = CSR.from_dense(t), BSR.from_dense(t, (2, 2))
    torch.testing.assert_close(csr @ x, csr.matmul_reference(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bsr @ x, bsr.to_torch() @ x, rtol=1e-5, atol=1e-5)
    wide = torch.randn(t.shape[1], 16)  # from 16 columns on, BSR @ calls torch's kernel
    torch.testing.assert_close(bsr @ wide, bsr.matmul_reference(wide), rtol=1e-5, atol=1e-5)


def test_reference_paths_chunk_large_products(monkeypatch):
    from sparsetorch.formats import _reference

    monkeypatch.setattr(_reference, "_CHUNK", 7)  # force many chunks
    t = torch.randn(8, 12)
    t[t.abs() < 0.5] = 0
    x = torch.randn(12, 3)
    torch.testing.assert_close(CSR.from_dense(t).matmul_reference(x), t @ x)
    torch.testing.assert_close(BSR.from_dense(t, (2, 4)) @ x, t @ x)
    t.view(-1, 4)[:, 2:] = 0
    torch.testing.assert_close(NM.from_dense(t) @ x, t @ x)


@pytest.mark.parametrize("fmt", [CSR, COO])
def test_matmul_rejects_bad_operands(fmt):
    a = fmt.from_dense(torch.eye(3, 4))
    with pytest.raises(ValueError, match=r"operand must have shape \(4,\) or \(4, k\).*got \(3,\)"):
        a @ torch.ones(3)
    with pytest.raises(ValueError, match="operand must have shape"):
        a @ torch.ones(4, 2, 2)
    with pytest.raises(TypeError, match=r"operand has dtype torch.float64, matrix torch.float32"):
        a @ torch.ones(4, dtype=torch.float64)
    with pytest.raises(TypeError):
        a @ [1.0, 2.0, 3.0, 4.0]


def test_batched_nm_has_no_matmul():
    nm = NM.from_dense(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match=r"needs a 2-D matrix, this one has shape \(2, 3, 4\)"):
        nm @ torch.ones(4)
