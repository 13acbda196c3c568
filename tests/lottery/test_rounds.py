"""Round arithmetic: the kept fraction after k rounds is the closed form, exactly."""

import math
from fractions import Fraction

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

from sparsetorch.lottery.round_masks import ticket_masks
from sparsetorch.lottery.rounds import (
    check_rate,
    check_rounds,
    density_after,
    layer_rates,
    rounds_to,
    units_after,
)
from sparsetorch.masking import apply_masks


def exact_kept(n: int, rate_percent: int, rounds: int) -> int:
    """round-half-up(n * (1 - p)^k) in exact rational arithmetic."""
    value = n * (1 - Fraction(rate_percent, 100)) ** rounds
    return math.floor(value + Fraction(1, 2))


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 10**7),
    rate_percent=st.integers(1, 99),
    rounds=st.integers(0, 30),
)
def test_units_after_equals_exact_closed_form(n, rate_percent, rounds):
    value = n * (1 - Fraction(rate_percent, 100)) ** rounds
    # away from a .5 tie, float rounding cannot change the nearest whole number
    assume(abs(value - math.floor(value) - Fraction(1, 2)) > Fraction(1, 10**6))
    assert units_after(rate_percent / 100, rounds, n) == exact_kept(n, rate_percent, rounds)


def test_paper_lenet_fractions():
    # Frankle & Carbin: 20% per round -> 51.3% after 3, 21.1% after 7, 3.6% after 15 rounds
    assert density_after(0.2, 3) == pytest.approx(0.512)
    assert round(100 * density_after(0.2, 7), 1) == 21.0
    assert round(100 * density_after(0.2, 15), 1) == 3.5
    assert rounds_to(0.036, 0.2) == 15
    assert rounds_to(1.0, 0.2) == 0
    assert rounds_to(0.8, 0.2) == 1  # exactly reached, no extra round


def test_layer_rates_overrides():
    names = ["fc1.weight", "fc2.weight", "fc3.weight"]
    assert layer_rates(names, 0.2, {"output": 0.1}) == {
        "fc1.weight": 0.2,
        "fc2.weight": 0.2,
        "fc3.weight": 0.1,
    }
    assert layer_rates(names, 0.2, {"fc1": 0.0, "fc2.weight": 0.5})["fc1.weight"] == 0.0
    with pytest.raises(ValueError, match=r"names no prunable weight.*output, fc1\.weight"):
        layer_rates(names, 0.2, {"conv1": 0.1})
    with pytest.raises(ValueError, match=r"layer rate of 'output' must be in \[0, 1\)"):
        layer_rates(names, 0.2, {"output": 1.0})


@pytest.mark.parametrize("rate", [0, 1, 1.5, -0.1, float("nan")])
def test_prune_rate_outside_open_interval(rate):
    with pytest.raises(ValueError, match=r"prune_rate must be in \(0, 1\)"):
        check_rate(rate)


def test_check_rounds_refuses_pruning_a_layer_to_zero():
    # a 10-weight output layer at 50% keeps 5, 3 (2.5 rounds up), 1, 1, 0: zero at round 5
    units = {"fc1.weight": 1000, "fc3.weight": 10}
    rates = {"fc1.weight": 0.2, "fc3.weight": 0.5}
    first_zero = 5
    assert [units_after(0.5, r, 10) for r in range(1, 6)] == [5, 3, 1, 1, 0]
    check_rounds(units, rates, first_zero - 1)
    with pytest.raises(ValueError, match=f"round {first_zero} would prune fc3.weight"):
        check_rounds(units, rates, first_zero)
    check_rounds(units, {"fc1.weight": 0.2, "fc3.weight": 0.0}, 25)  # rate 0: never pruned


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(37, 23)
        self.fc2 = nn.Linear(23, 11)
        self.fc3 = nn.Linear(11, 5)


@pytest.mark.parametrize("scope", ["layerwise", "global"])
def test_ticket_masks_over_rounds_follow_closed_form_and_nest(scope):
    torch.manual_seed(0)
    model = MLP()
    names = ["fc1.weight", "fc2.weight", "fc3.weight"]
    rates = (
        layer_rates(names, 0.2, {"output": 0.1})
        if scope == "layerwise"
        else layer_rates(names, 0.3)
    )
    previous = None
    for r in range(1, 8):
        with torch.no_grad():  # "training": new weights every round
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        masks = ticket_masks(model, r, rates, "unstructured", scope)
        if scope == "layerwise":
            for name, mask in masks.items():
                n = mask.numel()
                assert int(mask.sum()) == units_after(rates[name], r, n)
        else:
            total = sum(m.numel() for m in masks.values())
            assert sum(int(m.sum()) for m in masks.values()) == units_after(0.3, r, total)
        if previous is not None:  # pruned weights stay pruned
            for name, mask in masks.items():
                assert not bool((mask & ~previous[name]).any())
        apply_masks(model, masks)
        previous = {k: v.clone() for k, v in masks.items()}


def test_ticket_masks_keep_largest_magnitudes():
    model = nn.Sequential(nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.1, -5.0, 0.3, 2.0], [-0.2, 0.05, 4.0, -1.0]]))
    masks = ticket_masks(model, 1, {"0.weight": 0.5}, "unstructured", "layerwise")
    expected = torch.tensor([[False, True, False, True], [False, False, True, True]])
    assert torch.equal(masks["0.weight"], expected)


def test_block_ticket_masks_count_blocks():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(8, 8, bias=False))
    masks = ticket_masks(model, 2, {"0.weight": 0.5}, "block2x2", "layerwise")
    m = masks["0.weight"]
    assert int(m.sum()) == 4 * units_after(0.5, 2, 16)
    blocks = m.reshape(4, 2, 4, 2)
    assert torch.equal(blocks.any(3).any(1), blocks.all(3).all(1))


def test_nm_ticket_masks_are_the_full_nm_mask():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(16, 4, bias=False))
    masks = ticket_masks(model, 1, {"0.weight": 0.5}, "2:4", "layerwise")
    groups = masks["0.weight"].reshape(4, 4, 4)
    assert torch.equal(groups.sum(-1), torch.full((4, 4), 2))
    w = model[0].weight.detach().abs().reshape(4, 4, 4)
    kept_min = torch.where(groups, w, torch.inf).amin(-1)
    dropped_max = torch.where(groups, -torch.inf, w).amax(-1)
    assert bool((kept_min >= dropped_max).all())


def test_global_round_that_empties_a_layer_is_refused():
    model = MLP()  # 37*23 + 23*11 + 11*5 = 1159 weights
    with torch.no_grad():
        model.fc3.weight.mul_(1e-6)  # the output layer's 55 weights are the smallest
    names = ["fc1.weight", "fc2.weight", "fc3.weight"]
    masks = ticket_masks(model, 1, dict.fromkeys(names, 0.01), "unstructured", "global")
    assert int(masks["fc3.weight"].sum()) == 55 - 12  # all 12 pruned weights are fc3's
    with pytest.raises(ValueError, match=r"round 1 would prune fc3\.weight to zero weights"):
        ticket_masks(model, 1, dict.fromkeys(names, 0.2), "unstructured", "global")
