"""Global tokens beside bands in the ``bands`` backend (backends/tokens.py): the split of a
pattern into its base and its tokens is exact (golden splits, and a property over random
windows, tokens and lengths: base inside the pattern, pattern = base plus the tokens' rows and
columns); the attention equals float64 masked attention, forward and gradients, with GQA,
strided bases and token rows without keys; non-finite keys and values reach only the rows that
may see them. On the CPU the base runs through the kernel's plain-torch twin, and through the
Triton kernel itself in Triton's interpreter (``TRITON_INTERPRET=1``, float16); on a GPU
(``-m gpu``) through ``sparse_attention(backend="bands")`` against the flex backend."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsetorch.attention import (
    band,
    causal,
    global_tokens,
    local,
    sparse_attention,
    strided,
)
from sparsetorch.attention.backends import bands_unsupported
from sparsetorch.attention.backends.bands import bands_attention, reference_band_lse
from sparsetorch.attention.backends.tokens import split_tokens
from sparsetorch.attention.pieces import pieces
from tests.attention.test_bands import _mask, check_contained, check_float64, masked_attention
from tests.kernels.interpreter import needs_interpreter


def test_golden_splits():
    found = split_tokens(local(2) | global_tokens([5, 0]))
    assert found.base == local(2) and found.indices == (0, 5)
    found = split_tokens(causal() & (local(3) | global_tokens([4])))
    assert found.base == band(0, 3) and found.indices == (4,)
    found = split_tokens(global_tokens([1]) | local(1) | global_tokens([3]))
    assert found.base == local(1) and found.indices == (1, 3)
    found = split_tokens(causal() & (local(2) | strided(4) | global_tokens([0])))
    assert found.base == causal() & (local(2) | strided(4)) and found.indices == (0,)


@pytest.mark.parametrize(
    "pattern",
    [
        global_tokens([0]),  # no base
        local(2) & global_tokens([0]),  # tokens only inside the base: no rows or columns
        (local(2) | global_tokens([0])) & (local(5) | global_tokens([1])),  # two token sets
        ~(local(2) | global_tokens([0])),
        local(3),  # no tokens: the plain bands path
    ],
    ids=repr,
)
def test_patterns_without_a_token_split(pattern):
    assert split_tokens(pattern) is None


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 40),
    w=st.integers(0, 6),
    tokens=st.lists(st.integers(0, 39), min_size=1, max_size=4),
    outer=st.sampled_from(["none", "causal", "band(1, None)", "band(-3, 9)"]),
)
def test_split_is_exact(n, w, tokens, outer):
    tokens = [t % n for t in tokens]
    inner = local(w) | global_tokens(tokens)
    pattern = {
        "none": inner,
        "causal": causal() & inner,
        "band(1, None)": band(1, None) & inner,
        "band(-3, 9)": band(-3, 9) & inner,
    }[outer]
    found = split_tokens(pattern)
    full, base = _mask(pattern, n), _mask(found.base, n)
    assert not (base & ~full).any()  # the base lies inside the pattern
    on_tokens = torch.zeros(n, n, dtype=torch.bool)
    on_tokens[list(found.indices), :] = True
    on_tokens[:, list(found.indices)] = True
    assert torch.equal(full, base | (full & on_tokens))


def _inputs(n, heads=4, kv_heads=2, d=8, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, heads, n, d, dtype=dtype, generator=g)
    k, v = (torch.randn(2, kv_heads, n, d, dtype=dtype, generator=g) for _ in "kv")
    return q, k, v, g


CASES = [
    local(3) | global_tokens([0]),
    local(2) | global_tokens([0, 7, 30]),
    causal() & (local(4) | global_tokens([0, 11])),
    band(1, None) & (local(3) | global_tokens([0, 5])),  # token row 0 sees no key
    band(1, None) & (band(None, 0) | global_tokens([0, 4])),  # the base has no pair
    causal() & (local(2) | strided(5) | global_tokens([3])),  # a periodic piece in the base
]


@pytest.mark.parametrize("pattern", CASES, ids=repr)
@pytest.mark.parametrize("n", [31, 40])
def test_equals_float64_masked_attention(pattern, n):
    q, k, v, g = _inputs(n, seed=n)
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    found = split_tokens(pattern)
    out = bands_attention(q, k, v, pieces(found.base, n), 0.3, reference_band_lse, found)
    ref = masked_attention(q, k, v, _mask(pattern, n), 0.3)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-12)
    up = torch.randn(out.shape, dtype=torch.float64, generator=g)
    got = torch.autograd.grad(out, (q, k, v), up)
    want = torch.autograd.grad(ref, (q, k, v), up)
    for a, b in zip(got, want):
        assert bool(a.isfinite().all())
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def test_columns_run_in_row_chunks(monkeypatch):
    """The token columns' float32 scores go ``ROW_CHUNK`` rows at a time: the same result
    with chunks that do not divide the length."""
    from sparsetorch.attention.backends import tokens as module

    pattern, n = local(2) | global_tokens([0, 9]), 23
    q, k, v, _ = _inputs(n)
    found = split_tokens(pattern)
    whole = bands_attention(q, k, v, pieces(found.base, n), 0.3, reference_band_lse, found)
    monkeypatch.setattr(module, "ROW_CHUNK", 5)
    chunked = bands_attention(q, k, v, pieces(found.base, n), 0.3, reference_band_lse, found)
    torch.testing.assert_close(chunked, whole, atol=1e-13, rtol=0)


@pytest.mark.parametrize(
    ("head", "where", "pos"),
    [(1, "k", 7), (0, "v", 0), (1, "v", 20), (0, "k", 3)],  # in bands, a token (0), a token (20)
)
def test_non_finite_positions_reach_only_the_rows_that_may_see_them(head, where, pos):
    pattern, n = causal() & (local(2) | global_tokens([0, 20])), 26
    q, k, v, _ = _inputs(n, heads=2, kv_heads=2)
    (k if where == "k" else v)[0, head, pos, 1] = float("nan") if where == "k" else float("inf")
    found = split_tokens(pattern)
    out = bands_attention(q, k, v, pieces(found.base, n), 0.5, reference_band_lse, found)
    check_contained(out, q, k, v, _mask(pattern, n), head, pos, 0.5)
    assert bool(out[1].isfinite().all()) and bool(out[0, 1 - head].isfinite().all())


def test_backend_takes_token_patterns():
    """On the CPU the only objection left is the kernel's own (it needs CUDA)."""
    q = torch.randn(1, 2, 16, 16)
    reason = bands_unsupported(local(2) | global_tokens([0]), q, q)
    assert reason == bands_unsupported(local(2), q, q)


@needs_interpreter
@pytest.mark.parametrize(
    "pattern",
    [local(4) | global_tokens([0, 17]), causal() & (local(5) | global_tokens([2]))],
    ids=repr,
)
def test_interpreted_kernel_with_tokens_equals_float64(pattern):
    """The base through the Triton kernel itself, in the CPU interpreter (float16)."""
    from sparsetorch.kernels.band_attention import band_attention_lse

    n, d = 45, 16
    q, k, v, g = _inputs(n, d=d, seed=n)
    q, k, v = (t.to(torch.float16).requires_grad_() for t in (q, k, v))
    found = split_tokens(pattern)
    out = bands_attention(q, k, v, pieces(found.base, n), d**-0.5, band_attention_lse, found)
    check_float64(out, (q, k, v), _mask(pattern, n), d**-0.5, g, 5e-3)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(
    "pattern",
    [
        local(64) | global_tokens([0, 100]),
        causal() & (local(128) | global_tokens([0])),
        band(1, None) & (local(64) | global_tokens([0, 50])),  # token row 0 sees no key
    ],
    ids=repr,
)
def test_gpu_bands_with_tokens_equals_float64(dtype, pattern):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    n, d = 1000, 64
    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(1, 4, n, d, device="cuda", dtype=dtype, generator=g).requires_grad_()
    k, v = (
        torch.randn(1, 2, n, d, device="cuda", dtype=dtype, generator=g).requires_grad_()
        for _ in "kv"
    )
    out = sparse_attention(q, k, v, pattern, backend="bands")
    check_float64(out, (q, k, v), _mask(pattern, n, "cuda"), d**-0.5, g, 1e-2)


def test_indices_and_masks_are_made_once_per_length_and_bounded():
    """The token positions and masks are kept (a list turned into a GPU tensor is a copy the
    host waits for) and the cache stays bounded when the length changes call by call."""
    from sparsetorch.attention.backends import tokens as module

    found = split_tokens(local(1) | global_tokens([0, 2]))
    assert found.index("cpu") is found.index("cpu")
    assert found.column_mask(9, "cpu") is found.column_mask(9, "cpu")
    for n in range(3, 60):
        found.row_mask(n, "cpu")
        assert len(found._kept) <= module.KEPT
    torch.testing.assert_close(
        found.row_mask(5, "cpu"), _mask(local(1) | global_tokens([0, 2]), 5)[[0, 2]]
    )
