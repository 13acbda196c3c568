"""Block layouts as FlexAttention BlockMasks: equal to what create_block_mask finds by
evaluating the mask everywhere, on both the key side and the transposed query side."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.attention.flex_attention import BlockMask, create_block_mask

import sparsetorch.attention as A
from sparsetorch.attention.pattern import AttentionPattern

PATTERNS = [
    A.local(20),
    A.causal() & (A.local(9) | A.strided(33)),
    A.local(12) | A.global_tokens([0, 70]),
    A.random(2, seed=4),
    A.block(16, torch.eye(10, dtype=torch.bool) | torch.eye(10, dtype=torch.bool).roll(1, 1)),
    ~A.local(40),
]


def _dense(num, idx, rows, cols):
    out = torch.zeros(rows, cols, dtype=torch.bool)
    for r in range(rows):
        out[r, idx[r, : num[r]].long()] = True
    return out


@pytest.mark.parametrize("pattern", PATTERNS, ids=repr)
@pytest.mark.parametrize(("n", "block"), [(150, 32), (128, 64), (77, (16, 32))])
def test_block_mask_equals_create_block_mask(pattern, n, block):
    bq, bk = (block, block) if isinstance(block, int) else block
    ours = pattern.block_layout(n, block).to_block_mask(pattern.mask_mod(n))
    theirs = create_block_mask(
        pattern.mask_mod(n), None, None, n, n, device="cpu", BLOCK_SIZE=block
    )
    nqb, nkb = -(-n // bq), -(-n // bk)
    for num, idx in [("kv_num_blocks", "kv_indices"), ("full_kv_num_blocks", "full_kv_indices")]:
        a = _dense(getattr(ours, num)[0, 0], getattr(ours, idx)[0, 0], nqb, nkb)
        b = _dense(getattr(theirs, num)[0, 0], getattr(theirs, idx)[0, 0], nqb, nkb)
        assert torch.equal(a, b), num
    for num, idx in [("q_num_blocks", "q_indices"), ("full_q_num_blocks", "full_q_indices")]:
        a = _dense(getattr(ours, num)[0, 0], getattr(ours, idx)[0, 0], nkb, nqb)
        b = _dense(getattr(theirs, num)[0, 0], getattr(theirs, idx)[0, 0], nkb, nqb)
        assert torch.equal(a, b), num
    assert ours.seq_lengths == (n, n)
    assert isinstance(ours, BlockMask)


def test_q_side_is_the_transpose_of_the_kv_side():
    layout = (A.causal() & A.local(50)).block_layout(300, 32)
    kv = _dense(*layout.kv_blocks("any"), *layout.shape)
    q = _dense(*layout.q_blocks("any"), layout.shape[1], layout.shape[0])
    assert torch.equal(kv.T, q)
    assert layout.block_density == pytest.approx(float(kv.float().mean()))
    assert "full" in repr(layout)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 90),
    st.one_of(st.none(), st.integers(-100, 100)),
    st.one_of(st.none(), st.integers(-100, 100)),
    st.integers(1, 13),
    st.integers(1, 13),
)
def test_band_closed_form_flex_blocks_equal_the_generic_layout(n, lo, hi, bq, bk):
    band = A.band(lo, hi)
    fast = band.flex_blocks(n, (bq, bk))
    generic = AttentionPattern.flex_blocks(band, n, (bq, bk))  # via the block grid
    nqb, nkb = -(-n // bq), -(-n // bk)
    for num, idx, rows, cols in [
        ("kv_num", "kv_idx", nqb, nkb),
        ("full_kv_num", "full_kv_idx", nqb, nkb),
        ("q_num", "q_idx", nkb, nqb),
        ("full_q_num", "full_q_idx", nkb, nqb),
    ]:
        a = _dense(getattr(fast, num), getattr(fast, idx), rows, cols)
        b = _dense(getattr(generic, num), getattr(generic, idx), rows, cols)
        assert torch.equal(a, b), num
        assert getattr(fast, idx).shape == (rows, cols)
