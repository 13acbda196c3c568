"""Experiment trackers beside metrics.jsonl: ``training.log`` (``--log``) names them.

=============  ===========================================================================
tensorboard    ``run_dir/tensorboard`` (``torch.utils.tensorboard``; package tensorboard)
wandb          Weights & Biases, offline unless ``WANDB_MODE`` says otherwise, files under
               ``run_dir/wandb`` (``wandb sync`` uploads them); config = the hparams, the W&B
               run's id = the run dir's name, so a resumed run continues it
mlflow         MLflow, a file store ``run_dir/mlruns`` unless ``MLFLOW_TRACKING_URI`` is set;
               experiment ``sparsetorch``, params = the hparams fields, one MLflow run per
               run dir (tagged ``sparsetorch.run``; a resumed run continues it)
=============  ===========================================================================

Each evaluation row's numbers are logged at the row's step. ``auto`` (the default) is
TensorBoard when its package is installed and nothing otherwise; a tracker named explicitly
whose package is missing is an ImportError saying what to install. None is a dependency:
``pip install 'sparsetorch[wandb]'`` / ``'sparsetorch[mlflow]'`` / ``'sparsetorch[tensorboard]'``.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from sparsetorch._registry import Registry
from sparsetorch.experiments.hparams import AUTO, Hparams, loggers
from sparsetorch.experiments.tensorboard import TensorBoardLog

WANDB_DIR = "wandb"
MLFLOW_DIR = "mlruns"
MLFLOW_EXPERIMENT = "sparsetorch"
RUN_TAG = "sparsetorch.run"  # the MLflow tag holding the run dir's name

Tracker = Any  # callable(row) with close()
TRACKERS: Registry[Tracker] = Registry("tracker")


def numbers(row: dict[str, Any]) -> dict[str, float]:
    """The numeric fields of a metrics row (step and booleans left out)."""
    return {
        key: value
        for key, value in row.items()
        if key != "step" and isinstance(value, int | float) and not isinstance(value, bool)
    }


PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


def check_trackers(hparams: Hparams) -> None:
    """A ValueError naming what to install when a tracker named in ``training.log`` lacks its
    package (checked before a run dir is written)."""
    import importlib.util

    for name in loggers(hparams.training.log):
        if name != AUTO and importlib.util.find_spec(PACKAGES[name]) is None:
            raise ValueError(str(_missing(PACKAGES[name], name)))


def _missing(package: str, extra: str) -> ImportError:
    return ImportError(
        f"--log {extra} needs the {package} package: pip install 'sparsetorch[{extra}]'"
    )


@TRACKERS.register("tensorboard")
def _tensorboard(run_dir: Path, hparams: Hparams, run_id: str) -> Tracker:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise _missing("tensorboard", "tensorboard") from exc
    return TensorBoardLog(SummaryWriter(log_dir=str(run_dir / "tensorboard")))


class WandbLog:
    """One W&B run per run dir, id = the run dir's name (resumed when it exists)."""

    def __init__(self, run: Any) -> None:
        self.run = run

    def __call__(self, row: dict[str, Any]) -> None:
        self.run.log(numbers(row), step=int(row["step"]))

    def close(self) -> None:
        self.run.finish()


@TRACKERS.register("wandb")
def _wandb(run_dir: Path, hparams: Hparams, run_id: str) -> Tracker:
    try:
        import wandb
    except ImportError as exc:
        raise _missing("wandb", "wandb") from exc
    run = wandb.init(
        project=os.environ.get("WANDB_PROJECT", MLFLOW_EXPERIMENT),
        id=_wandb_id(run_id),
        name=run_id,
        dir=str(run_dir),
        mode=os.environ.get("WANDB_MODE", "offline"),
        config=hparams.to_dict(),
        resume="allow",
        reinit="finish_previous",
    )
    return WandbLog(run)


def _wandb_id(run_id: str) -> str:
    # W&B run ids may not hold "/\\#?%:" characters
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)[:128]


class MlflowLog:
    """One MLflow run through the client API (no global active run: several run dirs in one
    process, such as a lottery's rounds, each get their own)."""

    def __init__(self, client: Any, run_id: str, file_store: bool) -> None:
        self.client = client
        self.run_id = run_id
        self.file_store = file_store

    def __call__(self, row: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        step = int(row["step"])
        metrics = [Metric(_mlflow_key(k), float(v), stamp, step) for k, v in numbers(row).items()]
        with _file_store(self.file_store):
            self.client.log_batch(self.run_id, metrics=metrics)

    def close(self) -> None:
        with _file_store(self.file_store):
            self.client.set_terminated(self.run_id)


@contextlib.contextmanager
def _file_store(allow: bool) -> Any:
    """MLflow 3 refuses its file store unless ``MLFLOW_ALLOW_FILE_STORE`` is true: allow it
    (only) for the run dir's own store, while MLflow is called."""
    if not allow or "MLFLOW_ALLOW_FILE_STORE" in os.environ:
        yield
        return
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    finally:
        os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)


@TRACKERS.register("mlflow")
def _mlflow(run_dir: Path, hparams: Hparams, run_id: str) -> Tracker:
    try:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise _missing("mlflow", "mlflow") from exc
    given = os.environ.get("MLFLOW_TRACKING_URI")
    uri = given or (run_dir / MLFLOW_DIR).resolve().as_uri()
    with _file_store(not given):
        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name(MLFLOW_EXPERIMENT)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else client.create_experiment(MLFLOW_EXPERIMENT)
        )
        found = client.search_runs(
            [experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{run_id}'", max_results=1
        )
        if found:  # a resumed run continues its MLflow run
            mlflow_id = found[0].info.run_id
        else:
            mlflow_id = client.create_run(
                experiment_id, run_name=run_id, tags={RUN_TAG: run_id}
            ).info.run_id
            params = [Param(k, str(v)[:6000]) for k, v in sorted(hparams_params(hparams).items())]
            client.log_batch(mlflow_id, params=params)
    return MlflowLog(client, mlflow_id, not given)


def _mlflow_key(key: str) -> str:
    # MLflow keys allow alphanumerics, _ - . / and spaces
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in key)


def hparams_params(hparams: Hparams) -> dict[str, Any]:
    """Every hparams field as ``{"group.field": value}`` (MLflow params)."""
    out = {}
    for group, values in hparams.to_dict().items():
        if isinstance(values, dict):
            out.update({f"{group}.{k}": v for k, v in values.items()})
    return out


class Trackers:
    """The run's trackers, called together with each row; closed together."""

    def __init__(self, trackers: list[Tracker]) -> None:
        self.trackers = trackers

    def __bool__(self) -> bool:
        return bool(self.trackers)

    def __call__(self, row: dict[str, Any]) -> None:
        for tracker in self.trackers:
            tracker(row)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()


def open_trackers(run_dir: str | Path, hparams: Hparams, run_id: str | None = None) -> Trackers:
    """The trackers ``hparams.training.log`` names, writing under ``run_dir``."""
    run_dir = Path(run_dir)
    run_id = run_dir.name if run_id is None else run_id
    names = loggers(hparams.training.log)
    opened: list[Tracker] = []
    try:
        if names == [AUTO]:
            with contextlib.suppress(ImportError):  # tensorboard when installed
                opened.append(_tensorboard(run_dir, hparams, run_id))
        else:
            for name in names:
                opened.append(TRACKERS.build(name, run_dir=run_dir, hparams=hparams, run_id=run_id))
    except BaseException:
        Trackers(opened).close()
        raise
    return Trackers(opened)
