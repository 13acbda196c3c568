"""Rewinding: where the surviving weights of a ticket go back to before retraining.

``"init"`` is theta_0, the initialisation (Frankle & Carbin 2019); ``"K"`` is theta_K, the
weights after K optimizer steps of the dense round 0, and ``"Kep"`` the weights after K epochs
(late rewinding, Frankle et al. 2019). A rewound round starts at step K with theta_K under the
new masks and trains to the same last step T as round 0: the remaining T - K steps see the same
batches and learning rates that round 0 saw from step K on. The optimizer starts fresh (its
state at K is not kept), as in OpenLTH. Every parameter and buffer is rewound, biases included
(a naive version keeps the trained biases).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SPEC = re.compile(r"(\d+)(ep)?")


@dataclass(frozen=True)
class Rewind:
    """A rewind point: ``amount`` steps, or epochs when ``epochs`` is True."""

    amount: int = 0
    epochs: bool = False

    @classmethod
    def parse(cls, spec: str | int | Rewind) -> Rewind:
        """``"init"`` (= 0), ``"500"`` (steps), ``"2ep"`` (epochs) or an int number of steps."""
        if isinstance(spec, Rewind):
            return spec
        if isinstance(spec, int) and not isinstance(spec, bool):
            if spec < 0:
                raise ValueError(f"rewind must be 'init', STEPS or EPOCHSep (>= 0), got {spec}")
            return cls(spec)
        if not isinstance(spec, str):
            raise TypeError(f"rewind must be a string like 'init', '500' or '2ep', got {spec!r}")
        text = spec.strip().lower()
        if text == "init":
            return cls(0)
        match = _SPEC.fullmatch(text)
        if match is None:
            raise ValueError(
                f"rewind must be 'init', a number of steps ('500') or of epochs ('2ep'), "
                f"got {spec!r}"
            )
        return cls(int(match.group(1)), match.group(2) is not None)

    def step(self, steps_per_epoch: int, total_steps: int) -> int:
        """The rewind step K; refuses K >= the training length (nothing left to retrain)."""
        k = self.amount * steps_per_epoch if self.epochs else self.amount
        if k >= total_steps:
            raise ValueError(
                f"rewind {self} is step {k}, beyond the training length: it must be below "
                f"{total_steps} steps ({total_steps / steps_per_epoch:g} epochs)"
            )
        return k

    def __str__(self) -> str:
        if self.amount == 0:
            return "init"
        return f"{self.amount}ep" if self.epochs else str(self.amount)
