"""The settings of a lottery-ticket run, on top of the training hparams of every round.

What defines the tickets (rate, layer rates, scope, pattern, rewind point) is the run's
identity, together with the training hparams; how far the run goes (rounds, seeds, controls)
is not, so a finished run can be extended with more rounds, seeds or controls and reuses
everything already trained.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sparsetorch._checks import is_int, is_real
from sparsetorch.algorithms.config import setting
from sparsetorch.lottery.rewind import Rewind

SCOPES = ("layerwise", "global")
CONTROLS = ("reinit", "random-prune")
DEFAULT_RATE = 0.2


@dataclass
class IMPConfig:
    """``rounds`` pruning rounds after the dense round 0, each pruning ``prune_rate`` of the
    remaining weights (``layer_rates`` overrides per layer, ``"output"`` = the last layer),
    per layer (``scope="layerwise"``) or with one global threshold (``"global"``), in
    ``pattern`` units, rewinding to ``rewind`` (``"init"``, steps ``"500"``, epochs ``"2ep"``).

    Fixed-density patterns (N:M) make one-shot tickets: ``rounds`` must be 1 and no rate is
    given; round 1 keeps the best N of every M weights of the trained dense network. The fields
    generate the flags of ``sparsetorch lottery``.
    """

    rounds: int = setting(10, "pruning rounds after the dense round 0", metavar="N")
    prune_rate: float | None = setting(
        None,
        "fraction of the remaining weights pruned each round, in (0, 1) (default: 0.2; N:M "
        "patterns take none: their tickets are one-shot)",
        metavar="P",
    )
    layer_rates: dict[str, float] = setting(
        {},
        "per-layer rate, repeatable; NAME is a layer (fc3), a parameter (fc3.weight) or "
        "'output' (the last layer); RATE 0 keeps the layer dense. The paper's LeNet: "
        "--layer-rate output=0.1",
        flag="--layer-rate",
        metavar="NAME=RATE",
    )
    scope: str = setting(
        "layerwise",
        "prune each layer by its rate, or all layers with one magnitude threshold",
        choices=SCOPES,
    )
    pattern: str = setting(
        "unstructured",
        "ticket pattern: unstructured, blockHxW (e.g. block4x4: rounds prune whole blocks), "
        "N:M (e.g. 2:4: one round to the N:M mask, then rewind)",
    )
    rewind: str = setting(
        "init", "rewind point: 'init' (theta_0), STEPS (e.g. 500) or EPOCHSep (e.g. 1ep)"
    )
    seeds: tuple[int, ...] = setting((0,), "one IMP run per seed", metavar="S,S,...")
    controls: tuple[str, ...] = setting(
        (), "control branches: reinit, random-prune (default: none)", metavar="NAME,..."
    )

    def validate(self) -> IMPConfig:
        """Check every field (one clear error naming it); returns self, normalised."""
        from sparsetorch.patterns import get as get_pattern

        if not is_int(self.rounds) or self.rounds < 1:
            raise ValueError(f"rounds must be an int >= 1, got {self.rounds!r}")
        self.rounds = int(self.rounds)
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}; got {self.scope!r}")
        pattern = get_pattern(self.pattern)
        self.pattern = pattern.name
        if pattern.fixed_density is not None:
            if self.prune_rate is not None or self.layer_rates:
                raise ValueError(
                    f"pattern {pattern.name!r} has a fixed density ({pattern.fixed_density:g}): "
                    "its tickets are one-shot, so prune_rate and layer_rates do not apply"
                )
            if self.rounds != 1:
                raise ValueError(
                    f"pattern {pattern.name!r} has a fixed density, so its tickets take exactly "
                    f"one pruning round (rounds=1), got rounds={self.rounds}"
                )
        else:
            self.prune_rate = check_rate(
                DEFAULT_RATE if self.prune_rate is None else self.prune_rate
            )
        if not isinstance(self.layer_rates, dict):
            raise TypeError(f"layer_rates must be a dict {{name: rate}}, got {self.layer_rates!r}")
        for key, rate in self.layer_rates.items():
            check_rate(rate, f"layer rate of {key!r}", allow_zero=True)
        if self.scope == "global" and self.layer_rates:
            raise ValueError("layer_rates need scope 'layerwise' (global uses one threshold)")
        self.rewind = str(Rewind.parse(self.rewind))
        self.seeds = _int_tuple(self.seeds, "seeds")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct ints, at least one, got {self.seeds}")
        self.controls = tuple(self.controls)
        unknown = [c for c in self.controls if c not in CONTROLS]
        if unknown or len(set(self.controls)) != len(self.controls):
            raise ValueError(
                f"controls must be distinct names from {', '.join(CONTROLS)}; got "
                f"{list(self.controls)}"
            )
        return self

    def identity(self) -> dict[str, Any]:
        """The fields that define the tickets (not rounds, seeds or controls)."""
        return {
            "lottery.prune_rate": self.prune_rate,
            "lottery.layer_rates": dict(sorted(self.layer_rates.items())),
            "lottery.scope": self.scope,
            "lottery.pattern": self.pattern,
            "lottery.rewind": self.rewind,
        }

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["seeds"], data["controls"] = list(self.seeds), list(self.controls)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IMPConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown lottery field(s) {unknown}; known: {', '.join(known)}")
        return cls(**data).validate()


def check_rate(rate: float, name: str = "prune_rate", allow_zero: bool = False) -> float:
    """``rate`` as a float in (0, 1) (or [0, 1) with ``allow_zero``); one clear error otherwise."""
    if not is_real(rate):
        raise TypeError(f"{name} must be a float in (0, 1), got {rate!r}")
    low_ok = rate >= 0 if allow_zero else rate > 0
    if not (low_ok and rate < 1) or not math.isfinite(rate):
        interval = "[0, 1)" if allow_zero else "(0, 1)"
        raise ValueError(f"{name} must be in {interval}, got {rate}")
    return float(rate)


def _int_tuple(values: Sequence[int] | int, name: str) -> tuple[int, ...]:
    if isinstance(values, int) and not isinstance(values, bool):
        values = (values,)
    if not isinstance(values, list | tuple) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values
    ):
        raise TypeError(f"{name} must be a list of ints >= 0, got {values!r}")
    return tuple(values)
