"""GMP, SET and RigL in the runner: ``sparsetorch train --method gmp|set|rigl``.

The hook builds the algorithm in ``on_train_start`` from the run's model, optimizer, total
steps, seed and the method's config, and lets it take the loop's optimizer step
(``steps_optimizer``): the runner calls the algorithm's own :meth:`DynamicSparsity.step`, the
one implementation of a dynamic-sparsity training step (RigL's update iterations replace the
optimizer step there), through the run's GradScaler under fp16 (``ctx.scaler``). Each update's
statistics go into ``ctx.logs`` (metrics.jsonl); at the end the run dir gets
``topology.jsonl`` (every update) and ``plots/topology_churn.png``.
"""

from __future__ import annotations

import json
from typing import Any

from sparsetorch.algorithms.config import AlgorithmConfig
from sparsetorch.algorithms.during import GMP, SET, DynamicSparsity, RigL, plot_churn
from sparsetorch.experiments.hooks import TrainContext, TrainHook
from sparsetorch.experiments.methods import register
from sparsetorch.experiments.reporting import CHURN_PNG
from sparsetorch.experiments.rundir import PLOTS_DIR, write_text_atomic


class DynamicSparsityHook(TrainHook):
    """Runs a :class:`DynamicSparsity` algorithm inside the runner's loop."""

    steps_optimizer = True

    def __init__(self, algorithm: type[DynamicSparsity], config: AlgorithmConfig) -> None:
        self.algorithm = algorithm
        self.config = config
        self.algo: DynamicSparsity | None = None
        self._pending: dict[str, Any] | None = None

    def on_train_start(self, ctx: TrainContext) -> None:
        seeded = {} if self.algorithm is GMP else {"seed": ctx.seed}
        self.algo = self.algorithm(
            ctx.model, ctx.optimizer, self.config, total_steps=ctx.total_steps, **seeded
        )
        if self._pending is not None:
            self.algo.load_state_dict(self._pending)
            self._pending = None

    def optimizer_step(self, ctx: TrainContext, step: int) -> None:
        if self.algo.t != step:
            raise RuntimeError(
                f"{self.algo.method} is at step {self.algo.t} but the runner at step {step}"
            )
        updates = len(self.algo.history)
        self.algo.step(scaler=ctx.scaler)
        if len(self.algo.history) > updates:
            ctx.logs.update(self.algo.logs())

    def on_train_end(self, ctx: TrainContext) -> None:
        if ctx.run_dir is None or not self.algo.history:
            return
        lines = "".join(json.dumps(entry) + "\n" for entry in self.algo.history)
        write_text_atomic(ctx.run_dir / "topology.jsonl", lines)
        title = f"{self.algo.method}: topology churn"
        if ctx.hparams is not None:
            hp = ctx.hparams
            title = (
                f"{hp.model.name} on {hp.dataset.name}, {self.algo.method} at sparsity "
                f"{self.config.sparsity:g} ({self.config.distribution}, seed {ctx.seed}): "
                "topology churn"
            )
        path = ctx.run_dir / PLOTS_DIR / CHURN_PNG
        plot_churn(self.algo.history, path, title, total_steps=ctx.total_steps)

    def state_dict(self) -> dict[str, Any]:
        if self.algo is not None:
            return self.algo.state_dict()
        return dict(self._pending or {})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending = dict(state)


for _name, _algorithm in (("gmp", GMP), ("set", SET), ("rigl", RigL)):
    register(_name, lambda cfg, algorithm=_algorithm: DynamicSparsityHook(algorithm, cfg))
