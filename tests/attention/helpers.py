"""Shared helpers for the attention tests: an independent masked-softmax attention in float64,
hypothesis strategies for patterns (with their sequence length), and the block reduction of a
dense mask."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

import sparsetorch.attention as A


def naive_attention(q, k, v, mask, scale):
    """softmax(q kᵀ · scale masked) v in float64; rows without keys give 0 (finite gradients)."""
    q, k, v = (t.double() for t in (q, k, v))
    has_key = mask.any(-1, keepdim=True)  # (n, 1)
    s = (q @ k.transpose(-1, -2)) * scale
    s = s.masked_fill(~mask & has_key, float("-inf"))  # empty rows stay finite, then zeroed
    return (torch.softmax(s, -1) * has_key) @ v


def block_states(mask: torch.Tensor, bq: int, bk: int) -> torch.Tensor:
    """(nqb, nkb) int8 states (0 empty, 1 partial, 2 full) of a dense (n, n) mask; a block
    clipped at n is never full."""
    n = mask.shape[0]
    nqb, nkb = -(-n // bq), -(-n // bk)
    count = torch.zeros(nqb * bq, nkb * bk, dtype=torch.int64)
    count[:n, :n] = mask
    count = count.view(nqb, bq, nkb, bk).sum((1, 3))
    return torch.where(count == 0, 0, torch.where(count == bq * bk, 2, 1)).to(torch.int8)


@st.composite
def block_patterns(draw, n: int):
    """block(size, cells) covering n (sometimes with a spare row or column of cells)."""
    size = draw(st.integers(1, 6))
    rows = -(-n // size) + draw(st.integers(0, 1))
    cols = -(-n // size) + draw(st.integers(0, 1))
    row = st.lists(st.booleans(), min_size=cols, max_size=cols)
    return A.block(size, draw(st.lists(row, min_size=rows, max_size=rows)))


def leaves(n: int) -> st.SearchStrategy:
    """Elementary patterns valid at sequence length n."""
    return st.one_of(
        st.just(A.causal()),
        st.integers(0, 8).map(A.local),
        st.tuples(st.integers(-6, 6), st.integers(-6, 6)).map(lambda t: A.band(*t)),
        st.lists(st.integers(0, n - 1), min_size=1, max_size=3).map(A.global_tokens),
        st.integers(1, 9).map(A.strided),
        st.tuples(st.integers(0, 3), st.integers(1, 5)).map(lambda t: A.dilated(*t)),
        st.tuples(st.integers(1, 4), st.integers(0, 99), st.integers(1, 5)).map(
            lambda t: A.random(t[0], seed=t[1], block=t[2])
        ),
        block_patterns(n),
    )


@st.composite
def patterns_with_n(draw, max_n: int = 48, depth: int = 3):
    """(pattern, n): an expression of up to ``depth`` levels of |, &, ~ over leaves."""
    n = draw(st.integers(1, max_n))

    def expr(level: int):
        if level == 0:
            return leaves(n)
        sub = expr(level - 1)
        return st.one_of(
            leaves(n),
            st.tuples(sub, sub).map(lambda ab: ab[0] | ab[1]),
            st.tuples(sub, sub).map(lambda ab: ab[0] & ab[1]),
            sub.map(lambda a: ~a),
        )

    return draw(expr(depth)), n
