"""Unions of periodic bands (attention/pieces.py) and the ``bands`` backend (backends/bands.py)
against masks and float64 masked attention: the pieces are disjoint and cover exactly the
pattern's pairs; regrouping by residue round-trips; the log-sum-exp merge of the pieces'
attentions is the union's attention, forward and gradients, with GQA, lengths the periods do
not divide and rows without keys; non-finite keys reach only the rows that may see them.
On the CPU each piece runs through the kernel's plain-torch twin, and through the Triton kernel
itself in Triton's interpreter (``TRITON_INTERPRET=1``, float16); on a GPU (``-m gpu``) through
the compiled kernel, bfloat16/float16."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsetorch.attention import (
    band,
    causal,
    dilated,
    global_tokens,
    local,
    sparse_attention,
    strided,
)
from sparsetorch.attention.backends import BACKENDS, bands_unsupported
from sparsetorch.attention.backends.bands import (
    bands_attention,
    from_groups,
    merge,
    reference_band_lse,
    to_groups,
)
from sparsetorch.attention.pieces import Piece, pieces
from tests.kernels.interpreter import needs_interpreter, patch

patch()  # Triton 3.6's interpreter with numpy >= 2.3


def _mask(pattern, n, device="cpu"):
    i = torch.arange(n, device=device)
    return pattern.fn(n, device)(i[:, None], i[None, :])


def _pieces_mask(parts, n):
    i = torch.arange(n)
    d = i[:, None] - i[None, :]
    count = torch.zeros(n, n, dtype=torch.int64)
    for p in parts:
        count += ((d >= p.lo) & (d <= p.hi) & (d % p.period == 0)).long()
    return count


def masked_attention(q, k, v, allowed, scale):
    """float64 softmax attention under an (n, n) mask; a row without keys is 0."""
    group = q.shape[1] // k.shape[1]
    k = k.double().repeat_interleave(group, 1)
    v = v.double().repeat_interleave(group, 1)
    s = (q.double() @ k.transpose(-1, -2) * scale).masked_fill(~allowed, float("-inf"))
    return torch.softmax(s, -1).nan_to_num(0.0) @ v


def check_float64(out, leaves, allowed, scale, generator, tol):
    """``out``, made from the ``leaves`` q, k, v, against float64 masked attention under
    ``allowed``: the forward and the three gradients within relative error ``tol``."""
    exact = [t.detach().double().requires_grad_() for t in leaves]
    ref = masked_attention(*exact, allowed, scale)
    assert ((out.double() - ref).norm() / ref.norm()).item() < tol
    up = torch.randn(out.shape, device=out.device, generator=generator).to(out.dtype)
    got = torch.autograd.grad(out, leaves, up)
    want = torch.autograd.grad(ref, exact, up.double())
    for name, a, b in zip("qkv", got, want):
        assert ((a.double() - b).norm() / b.norm()).item() < tol, name


def _atoms():
    return st.one_of(
        st.builds(local, st.integers(0, 12)),
        st.builds(band, st.integers(-15, 15), st.integers(-15, 15)),
        st.just(causal()),
        st.builds(strided, st.sampled_from([1, 2, 3, 4, 6, 8])),
        st.builds(dilated, st.integers(0, 6), st.sampled_from([1, 2, 4])),
    )


def _patterns():
    return st.recursive(
        _atoms(),
        lambda inner: st.one_of(
            st.builds(lambda a, b: a | b, inner, inner),
            st.builds(lambda a, b: a & b, inner, inner),
        ),
        max_leaves=4,
    )


@settings(max_examples=300, deadline=None)
@given(pattern=_patterns(), n=st.integers(1, 40))
def test_pieces_are_disjoint_and_cover_exactly_the_pattern(pattern, n):
    parts = pieces(pattern, n)
    if parts is None:  # only periods that no single period covers
        return
    count = _pieces_mask(parts, n)
    assert int(count.max()) <= 1, parts
    assert torch.equal(count.bool(), _mask(pattern, n)), parts
    for a, b in itertools.pairwise(parts):
        assert a.hi < b.lo  # ordered along i - j, not overlapping
    for p in parts:
        assert p.lo % p.period == 0 and p.hi % p.period == 0 and p.lo <= p.hi


def test_golden_pieces():
    n = 65536
    assert pieces(causal() & (local(512) | strided(256)), n) == [
        Piece(0, 512, 1),
        Piece(768, 65280, 256),
    ]
    assert pieces(local(3) | strided(4), 10) == [Piece(-8, -4, 4), Piece(-3, 3, 1), Piece(4, 8, 4)]
    assert pieces(dilated(3, 2), 100) == [Piece(-6, 6, 2)]
    assert pieces(strided(2) | strided(4), 9) == [Piece(-8, 8, 2)]
    assert pieces(local(2) | band(7, 9), 20) == [Piece(-2, 2, 1), Piece(7, 9, 1)]
    assert Piece(768, 65280, 256).group_band() == (3, 255)
    assert Piece(-8, -4, 4).group_band() == (-2, -1)
    # not expressible by one period, or not bands at all
    assert pieces(strided(2) | strided(3), 10) is None
    assert pieces(local(4) | global_tokens([0]), 10) is None
    assert pieces(~local(4), 10) is None


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 50), s=st.integers(1, 9), rest=st.sampled_from([(), (3,)]))
def test_regrouping_by_residue_round_trips(n, s, rest):
    position = torch.arange(n).reshape(1, 1, n, *([1] * len(rest)))
    x = position.expand(2, 3, n, *rest).contiguous()
    groups = to_groups(x, s)
    first = 0
    for g in groups:  # batch entry (b, r), row a: position r + s * a
        c, m = g.shape[0] // 2, g.shape[2]
        want = first + torch.arange(c)[:, None] + s * torch.arange(m)[None, :]  # (c, m)
        got = g.reshape(2, c, 3, m, -1)
        assert torch.equal(got, want[None, :, None, :, None].expand_as(got))
        first += c
    assert first == min(s, n)
    assert torch.equal(from_groups(groups, s, n), x)


CASES = [
    causal() & (local(5) | strided(4)),
    local(3) | strided(4),
    causal() & strided(3),
    dilated(3, 2),
    local(2) | band(7, 9),
    band(3, 6) | (causal() & strided(5)),  # the first rows see no key
    band(2, None) & band(None, 1),  # no pair at all: zeros
]


@pytest.mark.parametrize("pattern", CASES, ids=repr)
@pytest.mark.parametrize("n", [23, 36])
def test_bands_attention_equals_float64_masked_attention(pattern, n):
    g = torch.Generator().manual_seed(n)
    q = torch.randn(2, 4, n, 8, dtype=torch.float64, generator=g).requires_grad_()
    k, v = (
        torch.randn(2, 2, n, 8, dtype=torch.float64, generator=g).requires_grad_() for _ in "kv"
    )
    out = bands_attention(q, k, v, pieces(pattern, n), 0.3, reference_band_lse)
    ref = masked_attention(q, k, v, _mask(pattern, n), 0.3)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-12)
    up = torch.randn(out.shape, dtype=torch.float64, generator=g)
    got = torch.autograd.grad(out, (q, k, v), up)
    want = torch.autograd.grad(ref, (q, k, v), up)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def test_merge_gives_zeros_for_rows_without_keys():
    out = torch.randn(1, 1, 3, 2)
    inf = torch.full((1, 1, 3), float("inf"))
    lse = torch.tensor([[[0.0, float("inf"), 1.0]]])
    merged = merge([out, torch.zeros_like(out)], [lse, inf])
    assert torch.equal(merged[0, 0, 1], torch.zeros(2))
    torch.testing.assert_close(merged[0, 0, [0, 2]], out[0, 0, [0, 2]])


def test_non_finite_keys_reach_only_the_rows_that_may_see_them():
    pattern, n = causal() & (local(2) | strided(5)), 21
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, n, 4, dtype=torch.float64, generator=g) for _ in "qkv")
    k[0, 1, 7, 0] = float("nan")
    v[0, 0, 12, 3] = float("inf")
    out = bands_attention(q, k, v, pieces(pattern, n), 0.5, reference_band_lse)
    for h, j in ((1, 7), (0, 12)):
        check_contained(out, q, k, v, _mask(pattern, n), h, j, 0.5)


def check_contained(out, q, k, v, allowed, head, pos, scale):
    """In batch entry 0 and ``head`` (k and v with q's heads), the rows ``allowed`` to see the
    bad position ``pos`` are NaN and the others equal float64 masked attention of the inputs
    with their non-finite entries zeroed."""
    rows = allowed[:, pos]
    assert bool(out[0, head, rows].isnan().all())
    clean_k, clean_v = k[:, head : head + 1].clone(), v[:, head : head + 1].clone()
    clean_k[~torch.isfinite(clean_k)] = 0
    clean_v[~torch.isfinite(clean_v)] = 0
    ref = masked_attention(q[:, head : head + 1], clean_k, clean_v, allowed, scale)
    torch.testing.assert_close(out[0, head, ~rows], ref[0, 0, ~rows], atol=1e-12, rtol=0)


def test_backend_names_what_it_cannot_run():
    q = torch.randn(1, 2, 16, 16)
    reason = bands_unsupported(local(2) & global_tokens([0]), q, q)
    assert reason is not None and "global_tokens" in reason
    with pytest.raises(ValueError, match="backend 'bands'"):
        BACKENDS.build("bands")(q, q, q, causal() & strided(4), 0.25)  # CPU, float32


# ---- the Triton band kernel per piece: CPU interpreter (float16), GPU ------------------------


@needs_interpreter
@pytest.mark.parametrize(
    "pattern",
    [causal() & (local(6) | strided(5)), local(4) | strided(8), dilated(9, 4)],
    ids=repr,
)
def test_interpreted_kernel_pieces_equal_float64_masked_attention(pattern):
    """The bands backend's own composition (regroup by residue, the kernel's lse, the merge and
    its gradient) with each piece through the Triton kernel itself, in the CPU interpreter."""
    from sparsetorch.kernels.band_attention import band_attention_lse

    n, d = 45, 16
    g = torch.Generator().manual_seed(n)
    q = torch.randn(1, 4, n, d, generator=g).to(torch.float16).requires_grad_()
    k, v = (torch.randn(1, 2, n, d, generator=g).to(torch.float16).requires_grad_() for _ in "kv")
    out = bands_attention(q, k, v, pieces(pattern, n), d**-0.5, band_attention_lse)
    check_float64(out, (q, k, v), _mask(pattern, n), d**-0.5, g, 5e-3)


@pytest.mark.gpu
@pytest.mark.parametrize(
    "dtype, d, pattern",
    [
        (torch.bfloat16, 64, causal() & (local(64) | strided(50))),
        (torch.float16, 128, local(40) | strided(64)),
        (torch.bfloat16, 128, dilated(30, 4)),
    ],
    ids=repr,
)
def test_gpu_bands_backend_equals_float64_masked_attention(dtype, d, pattern):
    n = 1000
    g = torch.Generator(device="cuda").manual_seed(d)
    q = torch.randn(1, 4, n, d, device="cuda", dtype=dtype, generator=g).requires_grad_()
    k, v = (
        torch.randn(1, 2, n, d, device="cuda", dtype=dtype, generator=g).requires_grad_()
        for _ in "kv"
    )
    out = sparse_attention(q, k, v, pattern, backend="bands")
    check_float64(out, (q, k, v), _mask(pattern, n, "cuda"), d**-0.5, g, 1e-2)
