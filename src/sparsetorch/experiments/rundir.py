"""The run directory: one folder per run, named by a hash of what makes the run what it is.

Layout (``runs/<model>-<method>-<hash>/``)::

    hparams.json        the run's config; ``sparsetorch train --config hparams.json`` reruns it
    run.json            identity (non-default hparams + digests of given inputs), hash, dataset
                        shapes, versions; written once, before training
    metrics.jsonl       one JSON row per evaluation (step, epoch, lr, losses, accuracies,
                        sparsity, wall_s, hook logs)
    checkpoints/        resume.pt (resume state, at every evaluation) and model_step<k>.safetensors
                        (model weights: step 0 = initialisation, the last step = final model,
                        plus any requested with save_states_at)
    result.json         written last: marks the run complete (final and early-stop rows,
                        per-layer densities, wall time)
    report.md, plots/   human-readable summary and PNG plots
    tensorboard/        only when the tensorboard package is installed

JSON files are written atomically; metrics.jsonl is append-only and cut back to the resume
checkpoint's step on resume.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sparsetorch._files import atomic_write
from sparsetorch.experiments.hparams import HPARAMS_VERSION, Hparams

HPARAMS_FILE = "hparams.json"
RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
RESULT_FILE = "result.json"
REPORT_FILE = "report.md"
PLOTS_DIR = "plots"


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{str(path)!r} is not valid JSON: {exc}") from exc


def check_out_dir(path: str | Path, what: str = "out dir") -> Path:
    """A directory we may create runs in: fails when it (or a parent) is a file."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise ValueError(f"{what} {str(path)!r} is not a directory: {str(p)!r} is a file")
    return path


class RunDir:
    """Paths and files of one run directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # paths
    @property
    def hparams_file(self) -> Path:
        return self.path / HPARAMS_FILE

    @property
    def run_file(self) -> Path:
        return self.path / RUN_FILE

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def result_file(self) -> Path:
        return self.path / RESULT_FILE

    @property
    def report_file(self) -> Path:
        return self.path / REPORT_FILE

    @property
    def plots_dir(self) -> Path:
        return self.path / PLOTS_DIR

    # state
    def is_complete(self) -> bool:
        return self.result_file.is_file()

    def check_compatible(self, identity: dict[str, Any]) -> None:
        """Refuse a directory written by another hparams version or holding another run."""
        check_out_dir(self.path, "run dir")
        if not self.hparams_file.is_file():
            if self.path.is_dir() and any(self.path.iterdir()):
                raise ValueError(
                    f"run dir {str(self.path)!r} is not empty and has no {HPARAMS_FILE}: "
                    "not a sparsetorch run"
                )
            return
        version = read_json(self.hparams_file).get("version")
        if version != HPARAMS_VERSION:
            raise ValueError(
                f"run dir {str(self.path)!r} was written with hparams version {version}; this "
                f"sparsetorch writes version {HPARAMS_VERSION}: use another --out or delete it"
            )
        if self.run_file.is_file():
            stored = read_json(self.run_file).get("identity", {})
            if stored != identity:
                keys = sorted(k for k in {*stored, *identity} if stored.get(k) != identity.get(k))
                raise ValueError(
                    f"run dir {str(self.path)!r} holds a different run (differs in {keys})"
                )

    def create(self, hparams: Hparams, run_info: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        if not self.hparams_file.is_file():
            write_json(self.hparams_file, hparams.to_dict())
        if not self.run_file.is_file():
            write_json(self.run_file, run_info)

    def run_info(self) -> dict[str, Any]:
        return read_json(self.run_file)

    def hparams(self) -> Hparams:
        return Hparams.load(self.hparams_file)

    # metrics
    def append_metrics(self, row: dict[str, Any]) -> None:
        with self.metrics_file.open("a") as fh:
            fh.write(json.dumps(row, allow_nan=False) + "\n")
            fh.flush()

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every complete row (a torn last line from a crash is dropped)."""
        if not self.metrics_file.is_file():
            return []
        rows = []
        for line in self.metrics_file.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
        return rows

    def truncate_metrics(self, max_step: int) -> list[dict[str, Any]]:
        """Keep the rows up to ``max_step`` (those the resume checkpoint has seen)."""
        rows = [r for r in self.read_metrics() if r["step"] <= max_step]
        write_text_atomic(self.metrics_file, "".join(json.dumps(r) + "\n" for r in rows))
        return rows

    # result
    def write_result(self, result: dict[str, Any]) -> None:
        write_json(self.result_file, result)

    def read_result(self) -> dict[str, Any]:
        if not self.is_complete():
            raise FileNotFoundError(f"run dir {str(self.path)!r} has no {RESULT_FILE}: unfinished")
        return read_json(self.result_file)
