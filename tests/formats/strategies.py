"""Hypothesis strategies for the format tests: random sparse matrices, seeded through torch."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
SPECIALS = (-0.0, float("nan"), float("inf"), float("-inf"), 1e-40)  # 1e-40: fp32 subnormal


def bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bit patterns of a float tensor (NaN == NaN, -0.0 != +0.0)."""
    return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


PAYLOAD_NAN = {2: 0x7FC1, 4: 0x7FC00001, 8: 0x7FF8000000000001}  # quiet NaNs with a payload


def with_payload_nan(t: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """``t`` with one nonzero entry (if any) replaced by a NaN carrying a payload, set through
    its bits (a float conversion would not keep the payload: torch 2.13 turns a float32 NaN
    into bfloat16 0xFFFF)."""
    nonzero = (t != 0).view(-1).nonzero().view(-1)
    if nonzero.numel():
        flat = int(nonzero[int(torch.randint(nonzero.numel(), (1,), generator=g))])
        bits(t).view(-1)[flat] = PAYLOAD_NAN[t.element_size()]
    return t


def canonical(t: torch.Tensor) -> torch.Tensor:
    """``t`` with -0.0 turned into +0.0: what a format that stores no zeros gives back."""
    return torch.where(t == 0, torch.zeros_like(t), t)


@st.composite
def matrices(draw, dtype=None, row_multiple=1, col_multiple=1, max_blocks=8, specials=True):
    """A (rows, cols) matrix with rows/cols multiples of the given sizes, density in {0..1}."""
    dtype = dtype or draw(st.sampled_from(DTYPES))
    rows = draw(st.integers(0, max_blocks)) * row_multiple
    cols = draw(st.integers(0, max_blocks)) * col_multiple
    density = draw(st.sampled_from([0.0, 0.1, 0.3, 0.7, 1.0]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    t = torch.randn(rows, cols, generator=g)
    t = torch.where(torch.rand(rows, cols, generator=g) < density, t, 0.0)
    if specials and t.numel():
        for value in draw(st.lists(st.sampled_from(SPECIALS), max_size=4)):
            t.view(-1)[int(torch.randint(t.numel(), (1,), generator=g))] = value
    t = t.to(dtype)
    return with_payload_nan(t, g) if specials and draw(st.booleans()) else t


@st.composite
def nm_matrices(draw, n, m, dtype=None, batch=False, specials=True):
    """A matrix (or batch of matrices) whose every group of m along a row has <= n nonzeros."""
    dtype = dtype or draw(st.sampled_from(DTYPES))
    lead = (draw(st.integers(1, 3)),) if batch else ()
    shape = (*lead, draw(st.integers(0, 6)), draw(st.integers(0, 4)) * m)
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    t = torch.randn(shape, generator=g)
    groups = t.reshape(-1, m)  # a view: edits go to t
    rank = torch.rand(groups.shape, generator=g).argsort(-1).argsort(-1)  # random rank per group
    keep = rank < torch.randint(0, n + 1, (groups.shape[0], 1), generator=g)  # 0..n per group
    groups.masked_fill_(~keep, 0.0)
    if specials and t.numel():
        for value in draw(st.lists(st.sampled_from(SPECIALS), max_size=3)):
            flat = int(torch.randint(t.numel(), (1,), generator=g))
            if value == 0 or keep.view(-1)[flat]:  # never break the N:M constraint
                t.view(-1)[flat] = value
    t = t.to(dtype)
    return with_payload_nan(t, g) if specials and draw(st.booleans()) else t
