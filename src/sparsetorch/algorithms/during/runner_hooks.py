"""GMP, SET and RigL as runner hooks: ``sparsetorch train --method gmp|set|rigl``.

The hook builds the algorithm on ``on_train_start`` from the run's model, optimizer, total
steps, seed and hparams (``--sparsity``, ``--pattern``, ``--distribution`` and the method's
``--method-option KEY=VALUE``: ``delta_t``, ``alpha``, ``t_end`` for SET/RigL; ``delta_t``,
``t_start``, ``t_end``, ``initial_sparsity`` for GMP) and calls it around the runner's
optimizer step. On a RigL update iteration the gradients are set to None after the update so
the runner's ``optimizer.step()`` changes nothing (the update replaces the step, as in
``RigL.step()``). Each update's statistics go into ``ctx.logs`` (metrics.jsonl); at the end
the run dir gets ``topology.jsonl`` (every update) and ``topology_churn.png``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sparsetorch.algorithms import METHODS
from sparsetorch.algorithms.during.base import DynamicSparsity
from sparsetorch.algorithms.during.churn import plot_churn
from sparsetorch.algorithms.during.gmp import GMP
from sparsetorch.algorithms.during.rigl import RigL
from sparsetorch.algorithms.during.sparse_evolutionary import SET
from sparsetorch.experiments.hooks import TrainContext, TrainHook
from sparsetorch.experiments.rundir import write_text_atomic

OPTIONS: dict[str, tuple[str, ...]] = {
    "gmp": ("delta_t", "t_start", "t_end", "initial_sparsity"),
    "set": ("delta_t", "alpha", "t_end"),
    "rigl": ("delta_t", "alpha", "t_end"),
}


class DynamicSparsityHook(TrainHook):
    """Runs a :class:`DynamicSparsity` algorithm inside the runner's loop."""

    def __init__(self, build: Callable[[TrainContext], DynamicSparsity]) -> None:
        self.build = build
        self.algo: DynamicSparsity | None = None
        self._pending: dict[str, Any] | None = None

    def on_train_start(self, ctx: TrainContext) -> None:
        self.algo = self.build(ctx)
        if self._pending is not None:
            self.algo.load_state_dict(self._pending)
            self._pending = None

    def after_backward(self, ctx: TrainContext, step: int) -> None:
        if self.algo.before_optimizer_step(step):
            for group in ctx.optimizer.param_groups:
                for param in group["params"]:
                    param.grad = None  # the update replaced this optimizer step
            ctx.logs.update(self.algo.logs())

    def after_step(self, ctx: TrainContext, step: int) -> None:
        updates = len(self.algo.history)
        self.algo.after_optimizer_step(step)
        self.algo.t = step + 1
        if len(self.algo.history) > updates:
            ctx.logs.update(self.algo.logs())

    def on_train_end(self, ctx: TrainContext) -> None:
        if ctx.run_dir is None or not self.algo.history:
            return
        lines = "".join(json.dumps(entry) + "\n" for entry in self.algo.history)
        write_text_atomic(ctx.run_dir / "topology.jsonl", lines)
        title = f"{self.algo.method}: topology churn"
        plot_churn(self.algo.history, ctx.run_dir / "topology_churn.png", title)

    def state_dict(self) -> dict[str, Any]:
        if self.algo is not None:
            return self.algo.state_dict()
        return dict(self._pending or {})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending = dict(state)


def _options(method: str, hparams: Any) -> dict[str, Any]:
    options = dict(hparams.sparsity.options)
    unknown = sorted(set(options) - set(OPTIONS[method]))
    if unknown:
        raise ValueError(
            f"unknown --method-option(s) {unknown} for method {method!r}; "
            f"known: {', '.join(OPTIONS[method])}"
        )
    return options


def _factory(method: str, cls: type[DynamicSparsity]) -> Callable[..., TrainHook]:
    def build_hook(hparams: Any) -> TrainHook:
        options = _options(method, hparams)  # fail before training starts
        s = hparams.sparsity

        def build(ctx: TrainContext) -> DynamicSparsity:
            kwargs = dict(
                sparsity=s.sparsity,
                distribution=s.distribution,
                total_steps=ctx.total_steps,
                pattern=s.pattern,
                **options,
            )
            if cls is not GMP:
                kwargs["seed"] = ctx.seed
            return cls(ctx.model, ctx.optimizer, **kwargs)

        return DynamicSparsityHook(build)

    build_hook.__name__ = f"build_{method}_hook"
    build_hook.algorithm = cls  # its distribution default is the runner's (method_distribution)
    return build_hook


METHODS.register("gmp")(_factory("gmp", GMP))
METHODS.register("set")(_factory("set", SET))
METHODS.register("rigl")(_factory("rigl", RigL))
