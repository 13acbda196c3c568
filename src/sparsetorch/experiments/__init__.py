"""Runs: hyperparameters, run directories, the training loop with its hooks, reports, plots.

    from sparsetorch.experiments import Hparams, train
    hp = Hparams()                       # LeNet-300-100 on Fashion-MNIST, Adam, 5 epochs
    hp.training.steps = 200
    result = train(hp, out_dir="runs")   # reuses a finished run dir, resumes an unfinished one
    print(result.summary())

docs/runner.md documents the API, the run-dir layout and how hooks and methods plug in.
"""

from sparsetorch.experiments.hooks import TrainContext, TrainHook
from sparsetorch.experiments.hparams import (
    HPARAMS_VERSION,
    DatasetHparams,
    Hparams,
    ModelHparams,
    SparsityHparams,
    TrainingHparams,
)
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
