"""Drop/grow against naive python references (sorts over lists), on small layers."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsetorch.algorithms.during.topology import (
    drop_grow,
    drop_lowest,
    grow_highest,
    n_to_drop,
    nm_group_ids,
    update_mask,
)
from sparsetorch.patterns import get as get_pattern
from tests.algorithms.during.helpers import naive_drop_grow


def random_layer(shape, density, seed):
    gen = torch.Generator().manual_seed(seed)
    numel = math.prod(shape)
    k = max(1, round(density * numel))
    mask = torch.zeros(numel, dtype=torch.bool)
    mask[torch.randperm(numel, generator=gen)[:k]] = True
    mask = mask.view(shape)
    weight = torch.randn(shape, generator=gen) * mask  # pruned weights are exact zeros
    grad = torch.randn(shape, generator=gen)
    return mask, weight, grad


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 9),
    cols=st.integers(1, 13),
    density=st.floats(0.05, 1.0),
    fraction=st.floats(0.0, 1.0),
    seed=st.integers(0, 10_000),
)
def test_drop_grow_equals_naive_reference(rows, cols, density, fraction, seed):
    mask, weight, grad = random_layer((rows, cols), density, seed)
    got = drop_grow(mask, weight.abs(), grad.abs(), fraction)
    assert torch.equal(got, naive_drop_grow(mask, weight.abs(), grad.abs(), fraction))
    assert int(got.sum()) == int(mask.sum())


@settings(max_examples=40, deadline=None)
@given(
    out=st.integers(1, 6),
    cols=st.integers(1, 14),
    m=st.sampled_from([2, 4, 8]),
    fraction=st.floats(0.0, 1.0),
    seed=st.integers(0, 10_000),
)
def test_grouped_drop_grow_equals_naive_and_keeps_group_counts(out, cols, m, fraction, seed):
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(out, cols, generator=gen)
    pattern = get_pattern(f"{max(1, m // 2)}:{m}")
    mask = pattern.mask(weight.abs())
    weight = weight * mask
    grad = torch.randn(out, cols, generator=gen)
    group = nm_group_ids(pattern, weight.shape)
    got = drop_grow(mask, weight.abs(), grad.abs(), fraction, group=group)
    assert torch.equal(got, naive_drop_grow(mask, weight.abs(), grad.abs(), fraction, group))
    before = torch.bincount(group[mask], minlength=int(group.max()) + 1)
    after = torch.bincount(group[got], minlength=int(group.max()) + 1)
    assert torch.equal(before, after)
    assert pattern.is_valid(got)


def test_naive_drop_bug_cannot_happen():
    # 95% of the layer is pruned (exact zeros); a naive topk(-(|w| * mask)) would pick
    # those zeros and drop nothing active. We must drop active weights, the smallest ones.
    mask, weight, _ = random_layer((20, 20), 0.05, seed=3)
    n_active = int(mask.sum())
    kept = drop_lowest(mask, weight.abs(), n_to_drop(n_active, 0.3))
    dropped = mask & ~kept
    assert int(dropped.sum()) == math.floor(0.3 * n_active) > 0
    assert not (dropped & ~mask).any()  # only previously active weights are dropped
    assert weight.abs()[dropped].max() < weight.abs()[kept].min()  # the smallest ones


def test_grow_picks_only_inactive_and_the_largest_gradients():
    mask = torch.tensor([True, False, False, True, False, False])
    scores = torch.tensor([9.0, 1.0, 5.0, 8.0, 5.0, 2.0])
    # inactive: 1, 2, 4, 5 -> the two largest are 2 and 4 (a tie at 5.0 is not split here)
    assert grow_highest(mask, scores, 2).tolist() == [False, False, True, False, True, False]
    # a tie at the threshold goes to the lower index
    assert grow_highest(mask, scores, 1).tolist() == [False, False, True, False, False, False]


def test_just_dropped_connection_may_come_back():
    mask = torch.tensor([True, True, False, False])
    drop = torch.tensor([0.1, 5.0, 0.0, 0.0])  # index 0 is the weakest active weight
    grow = torch.tensor([10.0, 0.0, 1.0, 2.0])  # ... and has the largest gradient
    assert drop_grow(mask, drop, grow, 0.5).tolist() == [True, True, False, False]


def test_fraction_zero_changes_nothing_and_one_replaces_by_gradient():
    mask, weight, grad = random_layer((8, 8), 0.25, seed=1)
    assert torch.equal(drop_grow(mask, weight.abs(), grad.abs(), 0.0), mask)
    full = drop_grow(mask, weight.abs(), grad.abs(), 1.0)
    # every connection re-chosen by gradient among all positions
    expected = torch.zeros(64, dtype=torch.bool)
    expected[torch.sort(grad.abs().flatten(), descending=True, stable=True).indices[:16]] = True
    assert torch.equal(full, expected.view(8, 8))


@pytest.mark.parametrize(
    ("pattern", "shape"),
    [("unstructured", (6, 10)), ("2:4", (6, 10)), ("1:4", (4, 3, 2, 3)), ("block2x2", (8, 6))],
)
@pytest.mark.parametrize("density", [0.5, 0.2])
def test_update_mask_keeps_pattern_valid_and_nnz(pattern, shape, density):
    p = get_pattern(pattern)
    if p.fixed_density is not None:
        density = min(density, p.fixed_density)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        weight = torch.randn(shape, generator=gen)
        mask = p.mask(torch.rand(shape, generator=gen), density)
        weight = weight * mask
        grad = torch.randn(shape, generator=gen)
        new = update_mask(p, mask, weight.abs(), grad.abs(), 0.5)
        assert p.is_valid(new)
        assert int(new.sum()) == int(mask.sum())
        assert not torch.equal(new, mask) or int(mask.sum()) < 2


def test_update_mask_blocks_move_by_block_scores():
    p = get_pattern("block2x2")
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[:2, :2] = True  # one active block (top left) of four
    weight = torch.randn(4, 4) * mask
    grad = torch.zeros(4, 4)
    grad[2:, 2:] = 1.0  # the bottom-right block has the largest summed gradient
    new = update_mask(p, mask, weight.abs(), grad.abs(), 1.0)
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[2:, 2:] = True
    assert torch.equal(new, expected)


def test_nm_group_ids_follow_the_pattern_layout():
    # conv weight (out=2, in=4, kh=1, kw=2): groups of M input channels at each kernel position
    p = get_pattern("2:4")
    ids = nm_group_ids(p, (2, 4, 1, 2))
    assert ids.shape == (2, 4, 1, 2)
    assert torch.equal(ids[0, :, 0, 0], torch.zeros(4, dtype=torch.int64))
    assert len(set(ids.flatten().tolist())) == 4  # (out * kh * kw) rows, one group each
    # a mask with one group over-full is invalid exactly when our ids say so
    mask = torch.zeros(2, 4, 1, 2, dtype=torch.bool)
    mask[0, :3, 0, 1] = True
    assert not p.is_valid(mask)
    assert int(torch.bincount(ids[mask]).max()) == 3


def test_bad_input():
    mask = torch.tensor([True, False])
    with pytest.raises(ValueError, match="fraction"):
        drop_grow(mask, torch.ones(2), torch.ones(2), 1.5)
    with pytest.raises(ValueError, match="finite"):
        drop_grow(mask, torch.tensor([float("nan"), 0.0]), torch.ones(2), 0.5)
    with pytest.raises(TypeError, match="bool"):
        drop_grow(mask.float(), torch.ones(2), torch.ones(2), 0.5)
    with pytest.raises(ValueError, match="valid 2:4"):
        update_mask(
            get_pattern("2:4"), torch.ones(1, 4, dtype=torch.bool), *[torch.ones(1, 4)] * 2, 0.3
        )
