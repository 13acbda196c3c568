"""The CPU sparse kernels (kernels/cpu) against dense masked products (float64) and against
their pure-torch twin, over shapes, densities, batches and both dtypes; the optimizer steps
against torch.optim's own update on the masked dense tensors."""

from __future__ import annotations

import pytest
import scipy.sparse
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsetorch.kernels.cpu import Packed, available, ops
from sparsetorch.kernels.cpu.packed import unsigned
from tests.kernels.cpu_backends import BACKENDS

TOL = {torch.float32: dict(atol=1e-4, rtol=1e-4), torch.bfloat16: dict(atol=3e-2, rtol=3e-2)}


def _case(out, k, batch, density, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(out, k, generator=g) < density
    w = (torch.randn(out, k, generator=g) * mask).to(dtype)
    x = torch.randn(batch, k, generator=g).to(dtype)
    dy = torch.randn(batch, out, generator=g).to(dtype)
    return mask, w, x, dy


def _columns(o, t):
    if t.shape[0] == 1:
        return t.reshape(-1, 1).float()
    return o.transpose_pad(t, -(-t.shape[0] // 8) * 8)


def _close(a, b, dtype):
    torch.testing.assert_close(a.double(), b.double(), **TOL[dtype])


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=40, deadline=None)
@given(
    out=st.integers(1, 70),
    k=st.integers(1, 70),
    batch=st.integers(1, 41),
    density=st.sampled_from([0.0, 0.03, 0.2, 0.6, 1.0]),
    dtype=st.sampled_from([torch.float32, torch.bfloat16]),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_kernels_equal_dense_masked_products(backend, out, k, batch, density, dtype, bias, seed):
    o = ops(backend)
    mask, w, x, dy = _case(out, k, batch, density, dtype, seed)
    b = torch.randn(out, generator=torch.Generator().manual_seed(seed)).to(dtype) if bias else None
    p = Packed.from_mask(mask)
    vals = o.gather(w, p.rowptr, p.cols)
    assert torch.equal(vals, w[mask])  # CSR order = row-major order of the kept entries
    xt, dyt = _columns(o, x), _columns(o, dy)
    wd, xd, dyd = w.double(), x.double(), dy.double()
    # forward y = x W^T + b
    y = o.spmm(xt, batch, p.rowptr, p.cols, vals, None, b, dtype)
    assert y.shape == (batch, out) and y.dtype == dtype
    _close(y, xd @ wd.T + (0 if b is None else b.double()), dtype)
    # input gradient dx = dy W, over the CSC and the permutation
    dx = o.spmm(dyt, batch, p.colptr, p.rows, vals, p.perm, None, dtype)
    _close(dx, dyd @ wd, dtype)
    # weight gradient at kept positions only; the dense output keeps its other entries
    sentinel = torch.full((out, k), 7.0, dtype=dtype)
    g = o.sddmm(dyt, xt, p.rowptr, p.cols, sentinel, dtype)
    full = dyd.T @ xd
    _close(g, full[mask], dtype)
    assert torch.equal(sentinel[mask], g) and bool((sentinel[~mask] == 7).all())


@pytest.mark.skipif(not available(), reason="the compiled CPU kernels did not build here")
@settings(max_examples=25, deadline=None)
@given(
    out=st.integers(1, 40),
    k=st.integers(1, 40),
    batch=st.integers(1, 35),
    density=st.sampled_from([0.05, 0.3, 1.0]),
    dtype=st.sampled_from([torch.float32, torch.bfloat16]),
    seed=st.integers(0, 2**16),
)
def test_compiled_kernels_equal_the_torch_twin(out, k, batch, density, dtype, seed):
    c, r = ops("cpp"), ops("torch")
    mask, w, x, dy = _case(out, k, batch, density, dtype, seed)
    p = Packed.from_mask(mask)
    vals = c.gather(w, p.rowptr, p.cols)
    assert torch.equal(vals, r.gather(w, p.rowptr, p.cols))
    if batch > 1:
        assert torch.equal(_columns(c, x), _columns(r, x))
    xt, dyt = _columns(c, x), _columns(c, dy)
    for args in ((xt, p.rowptr, p.cols, None), (dyt, p.colptr, p.rows, p.perm)):
        a = c.spmm(args[0], batch, args[1], args[2], vals, args[3], None, dtype)
        b = r.spmm(args[0], batch, args[1], args[2], vals, args[3], None, dtype)
        _close(a, b, dtype)
    _close(
        c.sddmm(dyt, xt, p.rowptr, p.cols, None, dtype),
        r.sddmm(dyt, xt, p.rowptr, p.cols, None, dtype),
        dtype,
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", [40000, 70000])  # uint16 indices above int16's range; int32
def test_wide_layers_index_past_int16(backend, k):
    o = ops(backend)
    mask = torch.zeros(3, k, dtype=torch.bool)
    mask[0, [0, 32767, 32768, k - 1]] = True
    mask[2, [1, k // 2]] = True
    p = Packed.from_mask(mask)
    assert p.cols.dtype == (torch.int16 if k <= 65536 else torch.int32)
    assert torch.equal(unsigned(p.cols), mask.nonzero()[:, 1])
    w = torch.randn(3, k) * mask
    x = torch.randn(9, k)
    vals = o.gather(w, p.rowptr, p.cols)
    y = o.spmm(_columns(o, x), 9, p.rowptr, p.cols, vals, None, None, torch.float32)
    torch.testing.assert_close(y, x @ w.T, atol=1e-5, rtol=1e-5)


def test_packed_matches_scipy_csr_and_csc():
    g = torch.Generator().manual_seed(3)
    mask = torch.rand(37, 23, generator=g) < 0.3
    p = Packed.from_mask(mask)
    csr = scipy.sparse.csr_matrix(mask.numpy())
    csc = scipy.sparse.csc_matrix(mask.numpy())
    assert p.rowptr.tolist() == csr.indptr.tolist()
    assert unsigned(p.cols).tolist() == csr.indices.tolist()
    assert p.colptr.tolist() == csc.indptr.tolist()
    assert unsigned(p.rows).tolist() == csc.indices.tolist()
    # perm maps each CSC entry to its CSR position: same (row, column) pair
    rows_csr = p.row_index()
    assert torch.equal(rows_csr[p.perm.long()], unsigned(p.rows))
    csc_cols = torch.repeat_interleave(torch.arange(23), p.colptr[1:] - p.colptr[:-1])
    assert torch.equal(unsigned(p.cols)[p.perm.long()], csc_cols)
    assert p.nnz == int(mask.sum()) and p.density == pytest.approx(float(mask.float().mean()))
    with pytest.raises(TypeError, match=r"torch\.bool"):
        Packed.from_mask(mask.float())


@pytest.mark.skipif(not available(), reason="the compiled CPU kernels did not build here")
def test_threads_split_rows_without_changing_results():
    # each row is summed by one thread in a fixed order: 1 and 2 threads agree bit for bit
    # large enough for two threads in every kernel (they start one per ~0.2 ms of work)
    mask, w, x, dy = _case(512, 512, 40, 0.5, torch.float32, 0)
    o = ops("cpp")
    p = Packed.from_mask(mask)
    vals = o.gather(w, p.rowptr, p.cols)
    xt, dyt = _columns(o, x), _columns(o, dy)
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        results.append(
            (
                o.spmm(xt, 40, p.rowptr, p.cols, vals, None, None, torch.float32),
                o.spmm(dyt, 40, p.colptr, p.rows, vals, p.perm, None, torch.float32),
                o.sddmm(dyt, xt, p.rowptr, p.cols, None, torch.float32),
            )
        )
    for a, b in zip(*results):
        assert torch.equal(a, b)


def _torch_adam_reference(w, mask, grads, **kw):
    """torch.optim.Adam on the masked dense parameter (gradient masked, as the mask hooks do)."""
    p = torch.nn.Parameter(w.clone())
    opt = (torch.optim.AdamW if kw.pop("adamw", False) else torch.optim.Adam)([p], **kw)
    for g in grads:
        p.grad = g * mask
        opt.step()
    return p.detach(), opt.state[p]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "kw",
    [
        dict(lr=1e-2),
        dict(lr=1e-2, weight_decay=0.1, amsgrad=True),
        dict(lr=3e-3, betas=(0.8, 0.95), eps=1e-6, maximize=True, weight_decay=0.01),
        dict(lr=1e-2, weight_decay=0.1, adamw=True),
    ],
)
def test_adam_step_equals_torch_adam_on_the_kept_entries(backend, kw):
    o = ops(backend)
    mask, w, _, _ = _case(30, 20, 1, 0.3, torch.float32, 1)
    g = torch.Generator().manual_seed(2)
    grads = [torch.randn(30, 20, generator=g) for _ in range(4)]
    expected, state = _torch_adam_reference(w, mask, grads, **dict(kw))
    lr, (b1, b2) = kw["lr"], kw.get("betas", (0.9, 0.999))
    p = Packed.from_mask(mask)
    param, m, v = w.clone(), torch.zeros(p.nnz), torch.zeros(p.nnz)  # packed state (nnz,)
    vmax = torch.zeros(p.nnz) if kw.get("amsgrad") else None
    vals = o.gather(param, p.rowptr, p.cols)
    for step, grad in enumerate(grads, 1):
        packed = step % 2 == 0  # packed and dense gradients alike
        source = grad[mask].contiguous() if packed else grad
        o.adam_step(
            param, source, packed, m, v, vmax, p.rowptr, p.cols, vals, lr, b1, b2,
            kw.get("eps", 1e-8), kw.get("weight_decay", 0.0), kw.get("adamw", False),
            kw.get("maximize", False), 1 - b1**step, (1 - b2**step) ** 0.5,
        )  # fmt: skip
    torch.testing.assert_close(param, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(m, state["exp_avg"][mask], atol=1e-7, rtol=1e-5)
    torch.testing.assert_close(v, state["exp_avg_sq"][mask], atol=1e-9, rtol=1e-5)
    if vmax is not None:
        torch.testing.assert_close(vmax, state["max_exp_avg_sq"][mask], atol=1e-9, rtol=1e-5)
    assert bool((param[~mask] == 0).all()) and torch.equal(vals, param[mask])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "kw",
    [
        dict(lr=0.1),
        dict(lr=0.05, momentum=0.9, weight_decay=1e-2),
        dict(lr=0.05, momentum=0.9, nesterov=True, maximize=True),
        dict(lr=0.05, momentum=0.5, dampening=0.3),
    ],
)
def test_sgd_step_equals_torch_sgd_on_the_kept_entries(backend, kw):
    o = ops(backend)
    mask, w, _, _ = _case(25, 17, 1, 0.4, torch.float32, 4)
    g = torch.Generator().manual_seed(5)
    grads = [torch.randn(25, 17, generator=g) for _ in range(3)]
    ref = torch.nn.Parameter(w.clone())
    opt = torch.optim.SGD([ref], **kw)
    for grad in grads:
        ref.grad = grad * mask
        opt.step()
    p = Packed.from_mask(mask)
    param = w.clone()
    buf = torch.empty(p.nnz) if kw.get("momentum", 0) else None  # packed (nnz,)
    vals = o.gather(param, p.rowptr, p.cols)
    for i, grad in enumerate(grads):
        o.sgd_step(
            param, grad[mask].contiguous(), True, buf, i == 0, p.rowptr, p.cols, vals,
            kw["lr"], kw.get("momentum", 0.0), kw.get("dampening", 0.0),
            kw.get("weight_decay", 0.0), kw.get("nesterov", False), kw.get("maximize", False),
        )  # fmt: skip
    torch.testing.assert_close(param, ref.detach(), atol=1e-6, rtol=1e-5)
    if buf is not None:
        expected = opt.state[ref]["momentum_buffer"][mask]
        torch.testing.assert_close(buf, expected, atol=1e-6, rtol=1e-5)
    assert torch.equal(vals, param[mask])


@pytest.mark.parametrize("backend", BACKENDS)
def test_fill_kept_touches_kept_positions_only(backend):
    o = ops(backend)
    mask, *_ = _case(9, 13, 1, 0.5, torch.float32, 6)
    p = Packed.from_mask(mask)
    dense = torch.full((9, 13), 3.0)
    o.fill_kept(dense, p.rowptr, p.cols, 0.0)
    assert bool((dense[mask] == 0).all()) and bool((dense[~mask] == 3).all())
