"""The band kernel's own containment of non-finite keys and values (``band_attention(...,
contain=True)``: the kernel marks the bad positions itself and a second pass recomputes the
tiles that see one) against the torch form it replaces: k and v cleaned (``nonfinite.split_torch``),
float64 masked attention, and the rows a band lets attend a bad position set to NaN
(``nonfinite.band_rows_seeing`` + ``masked_fill``). Rows: NaN exactly where the torch form has
them, every other row equal to float64; gradients: none from the NaN rows (even where the
incoming gradient there is NaN), 0 at the bad positions, float64's elsewhere.

On CPU in Triton's interpreter (``TRITON_INTERPRET=1``), every forward form; on a GPU
(``-m gpu``) in bfloat16 through ``sparse_attention(backend="band")``."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as hs

from sparsetorch.attention import local, sparse_attention
from sparsetorch.attention.backends import nonfinite
from sparsetorch.kernels import band_attention as bk
from sparsetorch.kernels.band_attention import clip_band
from tests.kernels.interpreter import needs_interpreter, patch
from tests.kernels.test_band_attention import forward_form, masked_attention

patch()

VALUES = (float("nan"), float("inf"), float("-inf"))
assert forward_form  # the fixture, used by name below


def poisoned(q, k, v, positions, seed):
    """k and v with one non-finite entry at each (b, h, j, in k?, value index) position."""
    g = torch.Generator().manual_seed(seed)
    k, v = k.detach().clone(), v.detach().clone()
    for b, h, j, in_k, which in positions:
        x = k if in_k else v
        d = int(torch.randint(0, x.shape[-1], (1,), generator=g))
        x[b, h, j, d] = VALUES[which]
    return k, v


def torch_form(q, k, v, lo, hi, scale):
    """The containment in torch ops around float64 masked attention: (out, NaN rows)."""
    ck, cv, bad = nonfinite.split_torch(k, v)
    out = masked_attention(q, ck, cv, lo, hi, scale)
    if bad is None:  # (the CPU: every entry finite)
        bad = torch.zeros(k.shape[:3], dtype=torch.bool, device=k.device)
    rows = nonfinite.band_rows_seeing(bad, lo, hi, q.shape[1])
    return out.masked_fill(rows[..., None], float("nan")), rows


def rel(got, want) -> float:
    """Relative error, against a norm of at least 1 (a gradient that is 0 in float64, as dq of
    a row that sees one key, comes out as rounding)."""
    return ((got.double() - want).norm() / want.norm().clamp_min(1.0)).item()


def bad_positions(k, v):
    """(B, H_kv, n): the positions whose k or v row holds a NaN or ±inf."""
    return ~(torch.isfinite(k).all(-1) & torch.isfinite(v).all(-1))


def check(q, k, v, lo, hi, tol, device="cpu"):
    """Forward and gradients of the contained kernel against :func:`torch_form`."""
    scale = 1 / math.sqrt(q.shape[-1])
    lo, hi = clip_band(lo, hi, q.shape[2])
    bad = bad_positions(k, v)
    q, k, v = (t.detach().requires_grad_() for t in (q, k, v))
    out = bk.band_attention(q, k, v, lo, hi, scale, contain=True)
    exact = [t.detach().double().requires_grad_() for t in (q, k, v)]
    ref, rows = torch_form(*exact, lo, hi, scale)
    nan_rows = torch.isnan(out).all(-1)
    assert torch.equal(nan_rows, rows), "NaN rows differ"
    assert not torch.isnan(out[~rows]).any(), "NaN outside the marked rows"
    keep = ~rows
    if keep.any():
        err = rel(out[keep], ref[keep])
        assert err < tol, f"forward relative error {err}"
    # incoming gradient: NaN on the NaN rows (a loss that does not mask them)
    up = torch.randn(out.shape, dtype=out.dtype, device=device).masked_fill(
        rows[..., None], float("nan")
    )
    grads = torch.autograd.grad(out, (q, k, v), up)
    want = torch.autograd.grad(ref, exact, up.double().nan_to_num(0.0))
    for name, got, w in zip("qkv", grads, want):
        assert torch.isfinite(got).all(), f"d{name} not finite"
        e = rel(got, w)
        assert e < tol, f"d{name} relative error {e}"
    for name, got in (("k", grads[1]), ("v", grads[2])):
        assert not got[bad].any(), f"d{name} at a bad position is not 0"
    assert not grads[0][rows].any(), "dq of a NaN row is not 0"
    return rows


@needs_interpreter
@pytest.mark.usefixtures("forward_form")
@pytest.mark.parametrize(
    "heads_kv, lo, hi, positions",
    [
        (2, -8, 8, [(0, 0, 5, True, 0), (0, 1, 40, False, 1)]),  # NaN in k, +inf in v
        (1, 0, 20, [(0, 0, 0, False, 0), (0, 0, 69, True, 2)]),  # first and last key, MQA
        (2, 3, 9, [(0, 1, 30, True, 1), (0, 1, 30, False, 0)]),  # band without the diagonal
        (2, -100, 100, [(0, 0, 11, False, 2)]),  # every row sees it: all NaN in that head
        (2, -8, 8, [(0, 0, 15, True, 0), (0, 1, 47, False, 0)]),  # last keys of 16-key tiles
    ],
)
def test_interpreted_contained_kernel_equals_the_torch_form(heads_kv, lo, hi, positions):
    g = torch.Generator().manual_seed(lo + 1000 * hi)
    q = torch.randn(1, 2, 70, 16, dtype=torch.float16, generator=g)
    k, v = (torch.randn(1, heads_kv, 70, 16, dtype=torch.float16, generator=g) for _ in "kv")
    k, v = poisoned(q, k, v, positions, seed=hi)
    rows = check(q, k, v, lo, hi, 5e-3)
    assert (rows.any() and not rows.all()) or (lo, hi) == (-100, 100)


@needs_interpreter
@settings(max_examples=8, deadline=None)
@given(
    n=hs.integers(1, 70),
    group=hs.sampled_from([1, 2]),
    lo=hs.integers(-40, 30),
    width=hs.integers(0, 60),
    positions=hs.lists(
        hs.tuples(hs.integers(0, 10**6), hs.integers(0, 1), hs.booleans(), hs.integers(0, 2)),
        max_size=4,
    ),
    seed=hs.integers(0, 2**16),
)
def test_interpreted_contained_kernel_property(n, group, lo, width, positions, seed):
    """Any length, band, GQA group and set of bad entries (none included)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(1, 2 * group, n, 16, dtype=torch.float16, generator=g)
    k, v = (torch.randn(1, 2, n, 16, dtype=torch.float16, generator=g) for _ in "kv")
    picks = [(0, h, j % n, in_k, which) for j, h, in_k, which in positions]
    k, v = poisoned(q, k, v, picks, seed)
    check(q, k, v, lo, lo + width, 5e-3)


@needs_interpreter
def test_interpreted_fixup_covers_the_first_pass_larger_tiles():
    """The first pass in 64-row tiles reading 16-key tiles, the fix-up in 32 x 32: a NaN value
    at key 50 reaches every row of the first pass's tile [64, 128) (it reads keys from 48),
    though only rows 42..58 may see it; the fix-up tile [96, 128) reads its own keys from 64
    and must still recompute."""
    import triton

    tuned = bk._fwd_tuned
    saved = tuned.configs
    tuned.configs = [
        triton.Config({"BLOCK_M": 64, "BLOCK_N": 16, "ONE_LOOP": True}, num_warps=4, num_stages=1)
    ]
    tuned.cache.clear()
    try:
        g = torch.Generator().manual_seed(5)
        q, k, v = (torch.randn(1, 1, 200, 16, dtype=torch.float16, generator=g) for _ in "qkv")
        v[0, 0, 50, 7] = float("nan")
        rows = check(q, k, v, -8, 8, 5e-3)
        assert rows[0, 0].nonzero().flatten().tolist() == list(range(42, 59))
    finally:
        tuned.configs = saved
        tuned.cache.clear()


@needs_interpreter
def test_interpreted_finite_inputs_are_unchanged_and_marks_are_exact():
    """With finite inputs the contained kernel equals the plain one bitwise (the second pass
    rewrites nothing); its marks are exactly the bad positions, per kv head (GQA: only the
    first query head of each group writes them)."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 4, 50, 16, dtype=torch.float16, generator=g)
    k, v = (torch.randn(1, 2, 50, 16, dtype=torch.float16, generator=g) for _ in "kv")
    plain = bk.band_attention(q, k, v, -4, 4)
    assert torch.equal(bk.band_attention(q, k, v, -4, 4, contain=True), plain)
    assert not bk.band_forward(q, k, v, -4, 4, 0.25, contain=True)[2].any()
    v[0, 0, 30, 3] = float("nan")
    k[0, 1, 0, 0] = float("-inf")
    marks = bk.band_forward(q, k, v, -4, 4, 0.25, contain=True)[2]
    assert marks.nonzero().tolist() == [[0, 0, 30], [0, 1, 0]]
    assert bk.band_forward(q, k, v, -4, 4, 0.25)[2].numel() == 0  # nothing asked, none made
    leaked = bk.band_attention(q, k, v, -4, 4)  # not contained: the NaN reaches its tile
    assert torch.isnan(leaked[0, :2, :20]).any()  # rows 0..19 cannot see key 30


@pytest.mark.gpu
@pytest.mark.parametrize("heads_kv", [4, 1])
def test_gpu_band_backend_contains_in_the_kernel(heads_kv, monkeypatch):
    """Through ``sparse_attention(backend="band")`` on CUDA, bfloat16, against the torch form:
    the kernel's own containment (autotuned first-pass tiles, the fix-up's 64 x 64); the
    cleaning kernel is not called (the band backend keeps no cleaned copy of k and v)."""
    from sparsetorch.kernels import finite_triton

    monkeypatch.setattr(finite_triton, "clean_nonfinite_triton", None)  # fails if called
    g = torch.Generator(device="cuda").manual_seed(heads_kv)
    q = torch.randn(1, 4, 3000, 64, device="cuda", dtype=torch.bfloat16, generator=g)
    k, v = (
        torch.randn(1, heads_kv, 3000, 64, device="cuda", dtype=torch.bfloat16, generator=g)
        for _ in "kv"
    )
    k, v = poisoned(q, k.cpu(), v.cpu(), [(0, 0, 17, True, 0), (0, 0, 2000, False, 1)], 1)
    k, v = k.cuda(), v.cuda()
    out = sparse_attention(q, k, v, local(100), backend="band")
    ref, rows = torch_form(q, k, v, -100, 100, 0.125)
    assert torch.equal(torch.isnan(out).all(-1), rows) and rows.any()
    keep = ~rows
    err = ((out[keep].double() - ref[keep]).norm() / ref[keep].norm()).item()
    assert err < 1e-2
    check(q, k, v, -100, 100, 2e-2, device="cuda")
