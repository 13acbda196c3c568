"""Round arithmetic of iterative magnitude pruning: how much of each layer every round keeps.

Round 0 trains the dense network. Each later round prunes a fraction ``p_l`` of the weights
layer ``l`` still has, so after ``r`` rounds the layer keeps the closed form

    density_l(r) = (1 - p_l) ** r

of its weights, to the nearest whole unit (weight, block): each round asks the pruner for this
cumulative target, never for "p of what is left, rounded", so rounding errors do not compound.
The paper's LeNet rates are 20% for the hidden layers and 10% for the output layer
(``layer_rates={"output": 0.1}``); a layer rate of 0 keeps that layer dense.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from sparsetorch._checks import is_int
from sparsetorch.lottery.config import check_rate
from sparsetorch.selection import nearest_count

OUTPUT = "output"  # layer_rates key for the last prunable weight (the classifier)


def layer_rates(
    names: Sequence[str], prune_rate: float, overrides: Mapping[str, float] | None = None
) -> dict[str, float]:
    """The per-round prune rate of every prunable weight (in ``names`` order).

    ``overrides`` maps a parameter name (``"fc3.weight"``), its module's name (``"fc3"``) or
    ``"output"`` (the last weight in ``names``) to a rate in [0, 1); the rest get ``prune_rate``.
    """
    check_rate(prune_rate)
    rates = dict.fromkeys(names, float(prune_rate))
    for key, rate in (overrides or {}).items():
        check_rate(rate, f"layer rate of {key!r}", allow_zero=True)
        if key == OUTPUT and names:
            matched = [names[-1]]
        else:
            matched = [n for n in names if key in (n, n.rpartition(".")[0])]
        if not matched:
            raise ValueError(
                f"layer_rates key {key!r} names no prunable weight; known: "
                f"{', '.join([OUTPUT, *names])}"
            )
        for name in matched:
            rates[name] = float(rate)
    return rates


def density_after(rate: float, rounds: int) -> float:
    """The fraction of a layer's weights kept after ``rounds`` rounds at ``rate``."""
    return (1.0 - rate) ** rounds


def sparsity_after(rate: float, rounds: int) -> float:
    """``1 - density_after``: what the pruner is asked for at round ``rounds``."""
    return 1.0 - density_after(rate, rounds)


def units_after(rate: float, rounds: int, num_units: int) -> int:
    """Units (weights, blocks) a layer of ``num_units`` keeps after ``rounds`` rounds: the
    count ``sparsetorch.pruning`` keeps for ``sparsity_after(rate, rounds)``."""
    return nearest_count(1.0 - sparsity_after(rate, rounds), num_units)


def rounds_to(density: float, rate: float) -> int:
    """The fewest rounds at ``rate`` that keep at most ``density`` (e.g. 15 rounds at 20% keep
    3.5%)."""
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density}")
    check_rate(rate)
    rounds = math.ceil(math.log(density) / math.log(1.0 - rate) - 1e-12)
    return max(rounds, 0)


def check_rounds(num_units: Mapping[str, int], rates: Mapping[str, float], rounds: int) -> None:
    """Refuse a plan that would prune a layer to zero units before round ``rounds``."""
    if not is_int(rounds) or rounds < 0:
        raise ValueError(f"rounds must be an int >= 0, got {rounds!r}")
    for name, n in num_units.items():
        rate = rates[name]
        if rate == 0 or units_after(rate, rounds, n) > 0:
            continue
        first = next(r for r in range(1, rounds + 1) if units_after(rate, r, n) == 0)
        raise ValueError(
            f"round {first} would prune {name} ({n} units at rate {rate}) to zero weights; "
            f"use at most {first - 1} rounds or a lower rate for this layer"
        )
