"""The band attention kernel (kernels/band_attention.py) against float64 masked attention:
forward and the three gradients, non-causal windows, causal windows, bands whose first rows
see no key, lengths that are not multiples of the tiles, GQA.

On CPU the kernels run in Triton's interpreter, in float16 (its bfloat16 arithmetic is not
faithful): ``TRITON_INTERPRET=1 PYTHONPATH=src:. python -m pytest tests/kernels/test_band_attention.py``.
On a GPU (``-m gpu``): bfloat16 and float16, head dims 64 and 128, through ``sparse_attention``
too, and under ``torch.compile(fullgraph=True)``."""

import math

import pytest
import torch

from sparsetorch.attention import band, causal, global_tokens, local, sparse_attention
from sparsetorch.kernels import band_attention as bk
from tests.kernels.interpreter import needs_interpreter, patch

patch()


def masked_attention(q, k, v, lo, hi, scale):
    """float64 softmax attention over keys with lo <= i - j <= hi; a row without keys is 0."""
    n, group = q.shape[2], q.shape[1] // k.shape[1]
    k = k.double().repeat_interleave(group, 1)
    v = v.double().repeat_interleave(group, 1)
    d = torch.arange(n, device=q.device)[:, None] - torch.arange(n, device=q.device)[None, :]
    allowed = (d >= lo) & (d <= hi)
    s = (q.double() @ k.transpose(-1, -2) * scale).masked_fill(~allowed, float("-inf"))
    return torch.softmax(s, -1).nan_to_num(0.0) @ v


def _check(shape_q, heads_kv, lo, hi, dtype, device, tol, scale=None):
    b, h, n, d = shape_q
    g = torch.Generator(device=device).manual_seed(n + d + h)
    q = torch.randn(b, h, n, d, dtype=dtype, device=device, generator=g)
    k, v = (torch.randn(b, heads_kv, n, d, dtype=dtype, device=device, generator=g) for _ in "kv")
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    scale = 1 / math.sqrt(d) if scale is None else scale
    out = bk.band_attention(q, k, v, lo, hi, scale)
    assert out.shape == q.shape and out.dtype == dtype
    exact = [t.detach().double().requires_grad_() for t in (q, k, v)]
    ref = masked_attention(*exact, lo, hi, scale)
    err = ((out.double() - ref).norm() / ref.norm()).item()
    assert err < tol, f"forward relative error {err}"
    up = torch.randn(out.shape, dtype=dtype, device=device, generator=g)
    grads = torch.autograd.grad(out, (q, k, v), up)
    want = torch.autograd.grad(ref, exact, up.double())
    for name, got, w in zip("qkv", grads, want):
        assert got.shape == w.shape
        if not w.any():  # dq at scale 0
            assert not got.any(), f"d{name} should be zero"
            continue
        e = ((got.double() - w).norm() / w.norm()).item()
        assert e < tol, f"d{name} relative error {e}"


CASES = [  # (B, H, n, D), kv heads, lo, hi
    ((1, 2, 70, 16), 2, -8, 8),  # local(8), n not a multiple of the tiles
    ((2, 2, 100, 32), 2, 0, 20),  # causal window
    ((1, 4, 64, 16), 2, 3, 9),  # band without the diagonal: rows 0..2 see no key; GQA 2
    ((1, 4, 50, 16), 1, -30, 5),  # asymmetric, multi-query (one kv head)
    ((1, 1, 33, 16), 1, -100, 100),  # wider than the sequence: full attention
]


FORMS = {
    "three-loop": {"ONE_LOOP": False},
    "one-loop": {"ONE_LOOP": True},
    "one-loop-tma": {"ONE_LOOP": True, "TMA": True},  # k, v through tensor descriptors
    "one-loop-poly": {"ONE_LOOP": True, "POLY": True},  # half the exp2 by polynomial
    "three-loop-poly": {"ONE_LOOP": False, "POLY": True},
}


@pytest.fixture(params=list(FORMS))
def forward_form(request):
    """The interpreter's forward config in each form (the autotuned list on a GPU starts
    with the one-loop form, the interpreter's single config is three-loop)."""
    import triton

    if "TMA" in FORMS[request.param]:  # descriptors made in the kernel take a scratch buffer
        triton.set_allocator(lambda size, align, stream: torch.empty(size, dtype=torch.int8))
    tuned = bk._fwd_tuned
    saved = tuned.configs
    tuned.configs = [
        triton.Config(
            {"BLOCK_M": 32, "BLOCK_N": 32, **FORMS[request.param]}, num_warps=4, num_stages=1
        )
    ]
    tuned.cache.clear()
    yield request.param
    tuned.configs = saved
    tuned.cache.clear()


@needs_interpreter
@pytest.mark.parametrize("shape, heads_kv, lo, hi", CASES)
def test_interpreted_kernel_equals_float64_masked_attention(shape, heads_kv, lo, hi, forward_form):
    _check(shape, heads_kv, lo, hi, torch.float16, "cpu", 2e-3)


def _check_log_sum_exp(device, dtype, n, d, lo, hi, scale, lse_atol, grad_tol):
    """``band_attention_lse``'s lse (log2 units, +inf for rows without keys) equals float64
    logsumexp, and gradients flow through it (the backward's dlse term) alone and together
    with the gradient through out."""
    g = torch.Generator(device=device).manual_seed(hi)
    q, k, v = (
        torch.randn(1, 2, n, d, device=device, dtype=dtype, generator=g).requires_grad_()
        for _ in "qkv"
    )
    out, lse = bk.band_attention_lse(q, k, v, lo, hi, scale)
    exact = [t.detach().double().requires_grad_() for t in (q, k, v)]
    i = torch.arange(n, device=device)
    dist = i[:, None] - i[None, :]
    s = (exact[0] @ exact[1].transpose(-1, -2) * scale).masked_fill(
        ~((dist >= lo) & (dist <= hi)), float("-inf")
    )
    ref = torch.logsumexp(s, -1) * math.log2(math.e)
    ref_out = torch.softmax(s, -1).nan_to_num(0.0) @ exact[2]
    empty = max(lo, 0)  # rows 0..lo-1 see no key
    assert bool(torch.isinf(lse[..., :empty]).all()) and bool(
        torch.isfinite(lse[..., empty:]).all()
    )
    torch.testing.assert_close(lse[..., empty:].double(), ref[..., empty:], atol=lse_atol, rtol=0)
    w_lse = torch.randn(lse[..., empty:].shape, device=device, generator=g)
    w_out = torch.randn(out.shape, device=device, generator=g).to(dtype)
    lse_loss, ref_lse_loss = (lse[..., empty:] * w_lse).sum(), (ref[..., empty:] * w_lse).sum()
    out_loss, ref_out_loss = (out.float() * w_out.float()).sum(), (ref_out * w_out.double()).sum()
    for loss, ref_loss in (
        (lse_loss, ref_lse_loss),
        (lse_loss + out_loss, ref_lse_loss + ref_out_loss),
    ):
        got = torch.autograd.grad(loss, (q, k, v), retain_graph=True, allow_unused=True)
        want = torch.autograd.grad(ref_loss, exact, retain_graph=True, allow_unused=True)
        for name, a, b in zip("qkv", got, want):
            if b is None:  # v: no gradient through the lse alone
                assert a is None or not a.any(), f"d{name}"
                continue
            err = ((a.double() - b).norm() / b.norm()).item()
            assert err < grad_tol, f"d{name} relative error {err}"


@needs_interpreter
@pytest.mark.parametrize("lo, hi", [(2, 40), (-8, 8)])
def test_interpreted_log_sum_exp_and_its_gradient(lo, hi, forward_form):
    _check_log_sum_exp("cpu", torch.float16, 70, 16, lo, hi, 0.25, 5e-3, 5e-3)


@needs_interpreter
@pytest.mark.parametrize("scale", [-0.25, 0.0])
def test_interpreted_kernel_takes_negative_and_zero_scales(scale):
    """The kernels scale each row's raw maximum, which holds for scale > 0 only;
    ``band_attention`` folds a negative scale's sign into q and a zero scale into zero scores
    (zero gradient for q), so every finite scale still equals float64."""
    _check((1, 2, 70, 16), 2, -8, 8, torch.float16, "cpu", 2e-3, scale=scale)


def test_band_forward_refuses_a_scale_that_is_not_positive():
    q = torch.randn(1, 1, 8, 16, dtype=torch.float16)
    with pytest.raises(ValueError, match="scale must be > 0"):
        bk.band_forward(q, q, q, -2, 2, -0.5)


@needs_interpreter
def test_a_value_head_dim_unlike_the_keys_is_refused():
    """The kernel runs one head dim for q, k and v: a different one for v (which the other
    backends take) is named, not computed with v's first D columns."""
    q = torch.randn(1, 2, 8, 16, dtype=torch.float16)
    v = torch.randn(1, 2, 8, 32, dtype=torch.float16)
    assert "v's head dim" in bk.unsupported(q, q, v)
    with pytest.raises(ValueError, match="v's head dim"):
        bk.band_attention(q, q, v, -2, 2)
    with pytest.raises(ValueError, match="v's head dim"):
        sparse_attention(q, q, v, local(2), backend="band")
    with pytest.raises(ValueError, match="v's head dim"):
        sparse_attention(q, q, v, local(2) | global_tokens([0]), backend="bands")


@needs_interpreter
def test_interpreted_empty_band_gives_zeros_and_zero_gradients():
    q, k, v = (torch.randn(1, 1, 20, 16, dtype=torch.float16, requires_grad=True) for _ in "qkv")
    out = bk.band_attention(q, k, v, 30, 40)  # i - j >= 30: no pair in a length-20 sequence
    assert torch.equal(out, torch.zeros_like(out))
    grads = torch.autograd.grad(out.float().sum(), (q, k, v))
    assert all(torch.equal(gr, torch.zeros_like(gr)) for gr in grads)


def test_unsupported_inputs_are_named():
    q = torch.randn(1, 3, 8, 16, dtype=torch.float16)
    reason = bk.unsupported(q, torch.randn(1, 2, 8, 16, dtype=torch.float16))
    if not bk.available():
        assert reason == "Triton is not installed"
        return
    assert reason is not None
    with pytest.raises(ValueError, match="band_attention"):
        bk.band_attention(q.float(), q.float(), q.float(), -2, 2)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("lo, hi", [(-64, 64), (0, 100), (2, 300), (-1000, 1000)])
@pytest.mark.parametrize("heads_kv", [4, 1])
def test_gpu_kernel_equals_float64_masked_attention(dtype, d, lo, hi, heads_kv):
    _check((2, 4, 777, d), heads_kv, lo, hi, dtype, "cuda", 1e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("pattern", [local(100), causal() & local(50), band(1, 80)], ids=repr)
def test_gpu_backend_band_equals_float64_and_auto_runs_it_from_its_length(pattern, monkeypatch):
    from sparsetorch.attention import backends

    monkeypatch.setattr(backends, "AUTO_BAND_MIN_N", 0)
    g = torch.Generator(device="cuda").manual_seed(3)
    q, k, v = (
        torch.randn(1, 4, 2500, 64, device="cuda", dtype=torch.bfloat16, generator=g) for _ in "qkv"
    )
    ours = sparse_attention(q, k, v, pattern, backend="band").double()
    exact = masked_attention(q, k, v, pattern.lo, pattern.hi, 0.125)
    assert ((ours - exact).norm() / exact.norm()).item() < 1e-2
    auto = sparse_attention(q, k, v, pattern, backend="auto")
    torch.testing.assert_close(auto, ours.to(auto.dtype), atol=0, rtol=0)  # auto runs band


@pytest.mark.gpu
def test_gpu_band_under_fullgraph_compile_and_backward():
    g = torch.Generator(device="cuda").manual_seed(4)
    q, k, v = (
        torch.randn(
            1, 2, 600, 64, device="cuda", dtype=torch.bfloat16, generator=g
        ).requires_grad_()
        for _ in "qkv"
    )

    def f(q, k, v):
        return bk.band_attention(q, k, v, -32, 32).float().square().sum()

    eager = torch.autograd.grad(f(q, k, v), (q, k, v))
    compiled = torch.compile(f, fullgraph=True)
    got = torch.autograd.grad(compiled(q, k, v), (q, k, v))
    for a, b in zip(eager, got):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


@pytest.mark.gpu
def test_gpu_kernel_log_sum_exp_and_its_gradient():
    _check_log_sum_exp("cuda", torch.bfloat16, 300, 64, 2, 40, 0.125, 2e-2, 1e-2)


@needs_interpreter
def test_interpreted_polynomial_exp2_against_float64():
    """``_exp2_poly`` (the POLY forms' exponentials on the FMA units): relative error below
    3e-7 on [-126, 0], exactly 0 below -126 and at -inf, exactly 1 at 0."""
    import triton
    import triton.language as tl

    @triton.jit
    def run(X, Y, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        x = tl.load(X + offs, mask=offs < n)
        tl.store(Y + offs, bk._exp2_poly(x), mask=offs < n)

    patch()
    x = torch.cat(
        [
            -torch.rand(4000, dtype=torch.float64) * 126,
            -torch.arange(0, 126, 0.125, dtype=torch.float64),  # integer and 1/8 steps
            torch.tensor([-126.5, -127.0, -200.0, -math.inf], dtype=torch.float64),
        ]
    ).float()
    y = torch.empty_like(x)
    run[(triton.cdiv(x.numel(), 1024),)](x, y, x.numel(), BLOCK=1024)
    want = torch.exp2(x.double())
    inside = x >= -126
    rel = ((y.double() - want) / want)[inside].abs().max().item()
    assert rel < 3e-7, rel
    assert (y[~inside] == 0).all()
    assert y[x == 0].eq(1.0).all()
