"""Patterns along a weight's reduction axis (``pattern.along(in_dim)``): transformers' Conv1D
stores (in, out), so its N:M groups run down the columns, its channels are columns."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsetorch.patterns import get


def naive_nm_down_columns(w: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """The top n of every m consecutive weights of each column of an (in, out) weight."""
    keep = torch.zeros_like(w, dtype=torch.bool)
    rows, cols = w.shape
    for j in range(cols):
        for start in range(0, rows, m):
            group = w[start : start + m, j]
            order = sorted(range(len(group)), key=lambda i: (-float(group[i]), i))
            for i in order[:n]:
                keep[start + i, j] = True
    return keep


@settings(max_examples=30, deadline=None)
@given(
    rows=st.sampled_from([4, 8, 12]),
    cols=st.integers(1, 6),
    nm=st.sampled_from([(2, 4), (1, 4), (1, 2)]),
    seed=st.integers(0, 10_000),
)
def test_nm_along_dim0_groups_down_the_columns(rows, cols, nm, seed):
    w = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed)).abs()
    p = get(f"{nm[0]}:{nm[1]}").along(0)
    mask = p.mask(w)
    assert torch.equal(mask, naive_nm_down_columns(w, *nm))
    assert p.is_valid(mask)
    assert p.max_units(w.shape) == rows * cols * nm[0] // nm[1]


def test_nm_validity_is_checked_down_the_columns():
    across = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0]]).bool()
    assert get("2:4").is_valid(across) and not get("2:4").along(0).is_valid(across)
    assert get("2:4").along(0).is_valid(across.T)


def test_channel_and_block_along_dim0():
    w = torch.arange(24.0).reshape(6, 4)  # (in=6, out=4): column j's sum grows with j
    channel = get("channel").along(0)
    mask = channel.mask(w, 0.5)
    assert mask.all(0).tolist() == [False, False, True, True]  # whole output columns
    assert channel.is_valid(mask) and not get("channel").is_valid(mask)
    block = get("block2x3").along(0)  # 2 outputs x 3 inputs: 2 columns x 3 rows of w
    assert block.indivisible(w.shape) is None and get("block2x3").indivisible(w.shape)
    kept = block.mask(w, 0.25)  # one of four blocks: the largest, rows 3..5, columns 2..3
    expected = torch.zeros(6, 4, dtype=torch.bool)
    expected[3:, 2:] = True
    assert torch.equal(kept, expected) and block.is_valid(kept)


def test_along_one_is_the_pattern_and_equality():
    p = get("2:4")
    assert p.along(1) is p and p.along(0).along(1) is p
    assert p.along(0) == get("2:4").along(0) and p.along(0) != p
    assert p.along(0).name == "2:4" and p.along(0).fixed_density == 0.5
    assert hash(p.along(0)) == hash(get("2:4").along(0))
    w = torch.randn(8)  # one row: the axis does not apply
    assert torch.equal(p.along(0).mask(w.abs()), p.mask(w.abs()))


@settings(max_examples=20, deadline=None)
@given(
    rows=st.integers(1, 9),
    cols=st.integers(1, 11),
    block=st.integers(1, 30),
    seed=st.integers(0, 10_000),
)
def test_nm_ranked_a_block_of_rows_at_a_time_is_the_same_mask(rows, cols, block, seed):
    import sparsetorch.patterns.nm as nm_module

    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 4, (rows, cols), generator=g).float()  # many ties
    p = get("2:4")
    whole = p.candidates(scores)
    before = nm_module._ROW_BLOCK
    nm_module._ROW_BLOCK = block  # blocks of block // cols rows (at least one)
    try:
        assert torch.equal(p.candidates(scores), whole)
    finally:
        nm_module._ROW_BLOCK = before
