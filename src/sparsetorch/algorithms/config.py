"""One config dataclass per algorithm: its settings, their defaults, their checks.

The fields are the single source of truth. The algorithm reads them (``st.RigL(model, opt,
total_steps=T, sparsity=0.9, delta_t=50)`` builds a :class:`RigLConfig` from its keyword
arguments, or takes ``config=RigLConfig(...)``); the command line gets one flag per field
(``--delta-t``, ``--alpha``, ``--schedule``; the help text is the field's ``help``), and a
run's identity holds the fields that differ from their defaults. Every algorithm has the three
axes ``sparsity``, ``pattern`` and ``distribution`` (each with its own default: ERK for SET and
RigL, uniform for GMP and random pruning, global otherwise); the other fields are its options.

This module imports no torch, so that the command line is built without it.

A config checks itself when built: a wrong type raises TypeError, a value out of range
ValueError, each naming the field and what it allows.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sparsetorch._registry import Registry
from sparsetorch.schedules import FractionSchedule, SparsitySchedule, names_of_kind

AXES = ("sparsity", "pattern", "distribution")
DEFAULT_ITERATIONS = 100  # SynFlow's pruning iterations (the paper's)
GRASP_TEMPERATURE = (
    200.0  # GraSP's softmax temperature (the official code's; the criterion's default)
)


def setting(default: Any, help: str, **meta: Any) -> Any:
    """A config field: its default, its help text (the flag's help), its checks (``low`` /
    ``high`` bounds, ``choices``) and how its flag looks (``flag``, ``metavar``). A dict or
    list default is copied for every instance."""
    if isinstance(default, dict | list):
        copy = type(default)
        return field(default_factory=lambda: copy(default), metadata={"help": help, **meta})
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class AlgorithmConfig:
    """Base: the three axes. Subclasses add their options and set ``method``."""

    method: ClassVar[str] = "algorithm"
    #: when the algorithm prunes ("at initialisation" or "during training"; help texts)
    phase: ClassVar[str] = "at initialisation"

    sparsity: float = setting(0.9, "fraction of the prunable weights pruned, in (0, 1)")
    pattern: Any = setting(
        "unstructured", "mask pattern: unstructured, N:M (2:4), blockHxW, channel"
    )
    distribution: Any = setting(
        "global", "how sparsity is spread over layers: global, uniform, erk"
    )

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = _check_field(getattr(self, f.name), f, hints[f.name], self.method)
            object.__setattr__(self, f.name, value)
        if not 0.0 < self.sparsity < 1.0:
            raise ValueError(
                f"{self.method}: sparsity must be in (0, 1), got {self.sparsity} (at 0 nothing "
                "is pruned and the model trains dense)"
            )
        self.check()

    def check(self) -> None:
        """Checks across fields (subclasses)."""

    # ---- the options: every field but the three axes ----------------------------------------
    @classmethod
    def option_fields(cls) -> list[dataclasses.Field]:
        return [f for f in dataclasses.fields(cls) if f.name not in AXES]

    @classmethod
    def default(cls, name: str) -> Any:
        (f,) = [f for f in dataclasses.fields(cls) if f.name == name]
        return f.default

    def options(self) -> dict[str, Any]:
        """The options that differ from their defaults (a run's identity holds these)."""
        return {
            f.name: getattr(self, f.name)
            for f in self.option_fields()
            if getattr(self, f.name) != f.default
        }

    @classmethod
    def from_options(cls, options: dict[str, Any], **axes: Any) -> AlgorithmConfig:
        """The config of ``axes`` plus ``options`` (``{name: value}``); an unknown option
        raises one ValueError listing the known ones."""
        known = [f.name for f in cls.option_fields()]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(
                f"method {cls.method!r} has no option(s) {unknown}; known: "
                f"{', '.join(known) or 'none'}"
            )
        return cls(**axes, **options)

    def replace(self, **changes: Any) -> AlgorithmConfig:
        return dataclasses.replace(self, **changes)


def build_config(
    cls: type[AlgorithmConfig], config: AlgorithmConfig | None, overrides: dict[str, Any]
) -> AlgorithmConfig:
    """An algorithm's config from ``config=`` and/or keyword arguments (they override it)."""
    if config is None:
        config = cls(**overrides)
    elif not isinstance(config, cls):
        raise TypeError(f"config must be a {cls.__name__}, got {type(config).__name__}")
    elif overrides:
        config = config.replace(**overrides)
    return config


# ---- the algorithms' configs ------------------------------------------------------------------
@dataclass
class SNIPConfig(AlgorithmConfig):
    """SNIP's settings for a training run: the axes (global by default) and the number of
    mini-batches scored."""

    method = "snip"

    batches: int = setting(1, "mini-batches scored", low=1)


@dataclass
class GraSPConfig(AlgorithmConfig):
    """GraSP's settings for a training run: the axes, the mini-batches scored and the
    softmax temperature (200, the official code's)."""

    method = "grasp"

    batches: int = setting(1, "mini-batches scored", low=1)
    temperature: float = setting(
        GRASP_TEMPERATURE, "softmax temperature of GraSP's scores", low=1e-12
    )


@dataclass
class SynFlowConfig(AlgorithmConfig):
    """SynFlow's settings for a training run: the axes and the pruning iterations (100, the
    paper's)."""

    method = "synflow"

    iterations: int = setting(DEFAULT_ITERATIONS, "pruning iterations of synflow", low=1)


@dataclass
class RandomConfig(AlgorithmConfig):
    """Random pruning's settings for a training run (the mask's seed is derived from the run's
    seed). Random scores under the global threshold keep every weight with the same chance:
    in expectation every layer gets the same density."""

    method = "random"


@dataclass
class GMPConfig(AlgorithmConfig):
    """GMP's settings: the final sparsity s_f reached from ``initial_sparsity`` s_i between
    ``t_start`` and ``t_end`` (default 75% of training) on the ``schedule``, updating every
    ``delta_t`` steps."""

    method = "gmp"
    phase = "during training"

    distribution: Any = setting(
        "uniform", "how sparsity is spread over layers: uniform, erk, global"
    )
    delta_t: int = setting(100, "steps between mask updates", low=1)
    t_start: int = setting(0, "first pruning step", low=0)
    t_end: int | None = setting(
        None, "last step with a mask update (default: 75% of training)", low=0
    )
    initial_sparsity: float | None = setting(
        None, "sparsity at t_start (default 0, or 1 - N/M under an N:M pattern)", low=0.0, high=1.0
    )
    schedule: str = setting(
        "gradual",
        "how masks change: gradual (cubic) or one_shot for gmp; cosine or constant drop fraction for set/rigl",
        choices=tuple(names_of_kind(SparsitySchedule)),
    )


@dataclass
class DropAndGrowConfig(AlgorithmConfig):
    """The settings SET and RigL share (RigL paper, Section 3 and its official code)."""

    method = "drop_and_grow"
    phase = "during training"

    distribution: Any = setting("erk", "how sparsity is spread over layers: erk, uniform, global")
    delta_t: int = setting(100, "steps between mask updates", low=1)
    alpha: float = setting(
        0.3,
        "initial drop fraction (0: no topology update, static sparse training)",
        low=0.0,
        high=1.0,
    )
    t_end: int | None = setting(
        None, "last step with a mask update (default: 75% of training)", low=1
    )
    schedule: str = setting(
        "cosine",
        "how masks change: gradual (cubic) or one_shot for gmp; cosine or constant drop fraction for set/rigl",
        choices=tuple(names_of_kind(FractionSchedule)),
    )


@dataclass
class SETConfig(DropAndGrowConfig):
    """SET's settings (RigL's schedule by default; ``schedule="constant"`` for the paper's)."""

    method = "set"


@dataclass
class RigLConfig(DropAndGrowConfig):
    """RigL's settings: sparsity 0.9, ERK, delta_t 100, alpha 0.3, cosine decay to t_end
    (default 75% of training), unstructured."""

    method = "rigl"


# ---- checks -----------------------------------------------------------------------------------
def _allowed(f: dataclasses.Field, kind: Any) -> str:
    """What field ``f`` allows, in words: ``an int >= 1``, ``a float in [0, 1]``, ..."""
    meta = f.metadata
    if "choices" in meta:
        return f"one of {', '.join(meta['choices'])}"
    name = {int: "an int", float: "a float", str: "a string", bool: "a bool"}.get(kind, str(kind))
    low, high = meta.get("low"), meta.get("high")
    if low is not None and high is not None:
        return f"{name} in [{low}, {high}]"
    if low is not None:
        return f"{name} >= {low}"
    if high is not None:
        return f"{name} <= {high}"
    return name


def _check_field(value: Any, f: dataclasses.Field, hint: Any, method: str) -> Any:
    """``value`` checked against field ``f`` (type, then range), int -> float losslessly; one
    TypeError or ValueError naming the field and what it allows."""
    if hint is Any:
        return value
    args = typing.get_args(hint)
    if args and type(None) in args:
        if value is None:
            return None
        (hint,) = [a for a in args if a is not type(None)]
    problem = f"{method}: {f.name} must be {_allowed(f, hint)}, got {value!r}"
    if hint is float and not isinstance(value, bool) and isinstance(value, numbers.Real):
        value = float(value)  # ints, numpy and torch scalars
    elif hint is int and not isinstance(value, bool) and isinstance(value, numbers.Integral):
        value = int(value)
    if isinstance(value, bool) is not (hint is bool) or not isinstance(value, hint):
        raise TypeError(problem)
    meta = f.metadata
    low, high = meta.get("low"), meta.get("high")
    bad = ("choices" in meta and value not in meta["choices"]) or (
        isinstance(value, float) and not math.isfinite(value)
    )
    bad = bad or (low is not None and value < low) or (high is not None and value > high)
    if bad:
        raise ValueError(problem)
    return value


#: method name -> its config class (``sparsetorch train --method NAME``)
CONFIGS: Registry[AlgorithmConfig] = Registry("method")
for _config in (
    SNIPConfig,
    GraSPConfig,
    SynFlowConfig,
    RandomConfig,
    GMPConfig,
    SETConfig,
    RigLConfig,
):
    CONFIGS.register(_config.method)(_config)


def methods_help() -> str:
    """The methods of ``sparsetorch train --method`` in words, from :data:`CONFIGS`:
    ``dense, snip, ... (at initialisation), gmp, ... (during training)``."""
    phases: dict[str, list[str]] = {"at initialisation": [], "during training": []}
    for name in CONFIGS.names():
        phases.setdefault(CONFIGS.lookup(name).phase, []).append(name)
    return ", ".join(
        ["dense", *(f"{', '.join(ns)} ({phase})" for phase, ns in phases.items() if ns)]
    )
