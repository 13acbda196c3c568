"""Runs: hyperparameters, run directories, the training loop with its hooks, reports, plots.

    from sparsetorch.experiments import Hparams, train
    hp = Hparams()                       # LeNet-300-100 on Fashion-MNIST, Adam, 5 epochs
    hp.training.steps = 200
    result = train(hp, out_dir="runs")   # reuses a finished run dir, resumes an unfinished one
    print(result.summary())

docs/runner.md documents the API, the run-dir layout and how hooks and methods plug in.

The names below are resolved on first use: ``Hparams`` and the command-line flags built from
it import no torch, so ``sparsetorch --help`` and a bad flag answer without loading it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sparsetorch.experiments.hparams import (
    HPARAMS_VERSION,
    DatasetHparams,
    Hparams,
    ModelHparams,
    SparsityHparams,
    TrainingHparams,
)

if TYPE_CHECKING:
    from sparsetorch.experiments.hooks import TrainContext, TrainHook
    from sparsetorch.experiments.loop import TrainingDiverged
    from sparsetorch.experiments.result import TrainResult
    from sparsetorch.experiments.runner import (
        adapt_dataset,
        build_model,
        load_run,
        method_hooks,
        prepare_dataset,
        prepare_model,
        train,
    )

_LAZY = {
    "TrainContext": "sparsetorch.experiments.hooks",
    "TrainHook": "sparsetorch.experiments.hooks",
    "TrainingDiverged": "sparsetorch.experiments.loop",
    "TrainResult": "sparsetorch.experiments.result",
    "adapt_dataset": "sparsetorch.experiments.runner",
    "build_model": "sparsetorch.experiments.runner",
    "load_run": "sparsetorch.experiments.runner",
    "method_hooks": "sparsetorch.experiments.runner",
    "prepare_dataset": "sparsetorch.experiments.runner",
    "prepare_model": "sparsetorch.experiments.runner",
    "train": "sparsetorch.experiments.runner",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sparsetorch.experiments' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "HPARAMS_VERSION",
    "DatasetHparams",
    "Hparams",
    "ModelHparams",
    "SparsityHparams",
    "TrainContext",
    "TrainHook",
    "TrainResult",
    "TrainingDiverged",
    "TrainingHparams",
    "adapt_dataset",
    "build_model",
    "load_run",
    "method_hooks",
    "prepare_dataset",
    "prepare_model",
    "train",
]
