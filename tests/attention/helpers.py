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


def equal_lists(count, idx, want_count, want_idx) -> None:
    """Block lists: counts equal, the used prefix of every index row equal, every entry (used
    or not) in range, rows contiguous (FlexAttention steps along a row by +1)."""
    rows, width = want_idx.shape
    assert torch.equal(count.cpu(), want_count.cpu())
    assert idx.shape == (rows, width) and idx.dtype == torch.int32
    assert int(idx.min()) >= 0 and int(idx.max()) < width
    assert idx.is_contiguous()
    idx, want_idx = idx.cpu(), want_idx.cpu()
    for r in range(rows):
        c = int(count[r])
        assert torch.equal(idx[r, :c], want_idx[r, :c]), r


# FlexBlocks' fields -> BlockMask's attributes, as (count, indices) pairs
SIDES = [
    (("kv_num", "kv_num_blocks"), ("kv_idx", "kv_indices")),
    (("full_kv_num", "full_kv_num_blocks"), ("full_kv_idx", "full_kv_indices")),
    (("q_num", "q_num_blocks"), ("q_idx", "q_indices")),
    (("full_q_num", "full_q_num_blocks"), ("full_q_idx", "full_q_indices")),
]


def flex_blocks_equal(got, want) -> None:
    """Two FlexBlocks hold the same lists on both sides, partial and full (equal_lists)."""
    for (num, _), (idx, _) in SIDES:
        equal_lists(getattr(got, num), getattr(got, idx), getattr(want, num), getattr(want, idx))


def block_mask_equals_host(mask, pattern, n: int, block) -> None:
    """A FlexAttention BlockMask (batch and heads broadcast) holds the lists of the host build."""
    host = pattern.flex_blocks(n, block)
    for (num, mask_num), (idx, mask_idx) in SIDES:
        got = getattr(mask, mask_num)[0, 0], getattr(mask, mask_idx)[0, 0]
        equal_lists(*got, getattr(host, num), getattr(host, idx))
