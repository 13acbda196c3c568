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

from typing import TYPE_CHECKING

from sparsetorch._lazy import lazy_names
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
    "TrainContext": "sparsetorch.experiments.hooks:TrainContext",
    "TrainHook": "sparsetorch.experiments.hooks:TrainHook",
    "TrainingDiverged": "sparsetorch.experiments.loop:TrainingDiverged",
    "TrainResult": "sparsetorch.experiments.result:TrainResult",
    "adapt_dataset": "sparsetorch.experiments.runner:adapt_dataset",
    "build_model": "sparsetorch.experiments.runner:build_model",
    "load_run": "sparsetorch.experiments.runner:load_run",
    "method_hooks": "sparsetorch.experiments.runner:method_hooks",
    "prepare_dataset": "sparsetorch.experiments.runner:prepare_dataset",
    "prepare_model": "sparsetorch.experiments.runner:prepare_model",
    "train": "sparsetorch.experiments.runner:train",
}


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

__getattr__, __dir__ = lazy_names(globals(), _LAZY)
