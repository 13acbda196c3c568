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

JSON files are written atomically (temp file, fsync, rename; new files get the umask's
permissions). metrics.jsonl is append-only; each row is fsynced before the resume checkpoint
that counts it, and that checkpoint keeps a copy of every row so far: a resume cuts the file
back to the checkpoint's step (later rows are computed again) and, where the file disagrees
with the copy (a corrupt line, rows lost to a power cut), rewrites it from the copy with a
warning. Nothing is ever dropped silently: without a copy (a checkpoint of an older
sparsetorch) a disagreeing file is refused.

While a process trains a run it holds an advisory lock on ``.sparsetorch.lock`` in the run dir
(:meth:`RunDir.lock`): a second process on the same run is refused, naming the first's pid.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from sparsetorch._files import (
    TEMP_PATTERN,
    atomic_write,
    fsync_dir,
    locked,
    remove_stale_temps,
)
from sparsetorch.experiments.hparams import HPARAMS_VERSION, Hparams

HPARAMS_FILE = "hparams.json"
RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
RESULT_FILE = "result.json"
REPORT_FILE = "report.md"
PLOTS_DIR = "plots"
LOCK_FILE = ".sparsetorch.lock"


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


def metrics_line(row: dict[str, Any]) -> str:
    """The one line of metrics.jsonl that holds ``row``."""
    return json.dumps(row, allow_nan=False)


def _parse_row(path: Path, number: int, line: str, repair: bool = True) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        row = None
    if not isinstance(row, dict) or not isinstance(row.get("step"), int):
        todo = "fix or delete that line" + ("" if repair else ", or train the run again")
        raise ValueError(
            f"{str(path)!r} line {number} is not a JSON row with a step: the file is "
            f"corrupt; {todo}"
        )
    return row


def _first_difference(text: str, lines: list[str]) -> str:
    have = text.splitlines()
    for i, line in enumerate(lines):
        if i >= len(have):
            return f"it holds {len(have)} of the {len(lines)} rows"
        if have[i] != line:
            return f"line {i + 1} differs"
    return "it ends in a torn line"


@contextlib.contextmanager
def hold_dir(path: Path, busy: str, temp_dirs: Callable[[], Iterable[Path]]) -> Iterator[None]:
    """Create ``path`` and hold its lock file (another holder: :class:`InUse` with ``busy``);
    remove the temp files of killed writers in ``temp_dirs()``. On exit, the directories this
    call created are removed again while empty."""
    created = _missing_dirs(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # a file on the way
        blocking = next(p for p in [*reversed(path.parents), path] if p.exists() and not p.is_dir())
        raise NotADirectoryError(
            f"run dir {str(path)!r} cannot be created: {str(blocking)!r} is a file, not a directory"
        ) from None
    try:
        with locked(path / LOCK_FILE, wait=False, busy=busy):
            for folder in temp_dirs():
                remove_stale_temps(folder)
            yield
    finally:
        for folder in created:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()  # only while empty


def is_unused(path: Path) -> bool:
    """``path`` holds nothing but what a killed writer can leave: a lock file, temp files."""
    return all(p.name == LOCK_FILE or TEMP_PATTERN.match(p.name) for p in path.iterdir())


def _folders(path: Path) -> list[Path]:
    """``path`` and every directory under it."""
    return [path, *(p for p in path.rglob("*") if p.is_dir())]


def _missing_dirs(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    return missing


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

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run dir for this process (creating it): a second process is refused with
        :class:`~sparsetorch._files.InUse`. Temp files of killed writers (anywhere in the
        run dir: checkpoints, plots, JSON files) are removed. On
        exit, the directories this call created are removed again if still empty (a run
        refused before it wrote anything leaves nothing)."""
        busy = (
            f"run dir {str(self.path)!r} is in use by another process (pid {{pid}}) training "
            "this run: wait for it to finish (the same command then reuses its result) or use "
            "another --out"
        )
        with hold_dir(self.path, busy, lambda: _folders(self.path)):
            yield

    def check_compatible(self, identity: dict[str, Any]) -> None:
        """Refuse a directory written by another hparams version or holding another run."""
        check_out_dir(self.path, "run dir")
        if not self.hparams_file.is_file():
            if self.path.is_dir() and not is_unused(self.path):
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
    def append_metrics(self, row: dict[str, Any]) -> str:
        """Append one row, durably (fsynced before the caller writes the resume checkpoint
        that counts it); returns its line (without the newline)."""
        line = metrics_line(row)
        new = not self.metrics_file.exists()
        with self.metrics_file.open("a") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        if new:
            fsync_dir(self.path)
        return line

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every row. A torn last line (no newline: a crash while appending) is dropped; any
        other unreadable line, or steps out of order, is a ValueError naming it."""
        if not self.metrics_file.is_file():
            return []
        text = self.metrics_file.read_text()
        lines = text.splitlines()
        if lines and not text.endswith("\n"):
            lines.pop()  # torn while appending: never counted by a checkpoint
        rows = [_parse_row(self.metrics_file, i, line) for i, line in enumerate(lines, 1)]
        steps = [r["step"] for r in rows]
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError(
                f"{str(self.metrics_file)!r} has its steps out of order ({steps}): written by "
                "two processes at once? Its rows cannot be trusted"
            )
        return rows

    def resume_metrics(self, step: int, known: list[str] | None) -> list[dict[str, Any]]:
        """The rows of a run resumed at ``step``, with metrics.jsonl made to hold exactly them.

        ``known``: the lines the resume checkpoint keeps (None for a checkpoint of an older
        sparsetorch). Rows after ``step`` (written before a crash, not yet counted by a
        checkpoint) are cut: training computes them again. A file that disagrees with
        ``known`` is rewritten from it, with a warning; without ``known``, a file that cannot
        be trusted is refused (ValueError) and left as it is.
        """
        text = self.metrics_file.read_text() if self.metrics_file.is_file() else ""
        if known is None:
            lines = self._checked_lines(text, step)
        else:
            lines = list(known)
            if not text.startswith("".join(line + "\n" for line in lines)):
                warnings.warn(
                    f"{str(self.metrics_file)!r} disagreed with the resume checkpoint at step "
                    f"{step} ({_first_difference(text, lines)}): rewritten from the "
                    f"checkpoint's copy of its {len(lines)} row(s)",
                    stacklevel=2,
                )
        expected = "".join(line + "\n" for line in lines)
        if text != expected:
            write_text_atomic(self.metrics_file, expected)
        return [json.loads(line) for line in lines]

    def _checked_lines(self, text: str, step: int) -> list[str]:
        """Lines of steps <= ``step``, when the file holds every row up to ``step`` (without a
        copy in the checkpoint to repair it from, anything else is refused)."""
        raw = text.splitlines()
        if raw and not text.endswith("\n"):
            raw.pop()  # torn while appending, after the checkpoint
        lines = []
        for i, line in enumerate(raw, 1):
            if _parse_row(self.metrics_file, i, line, repair=False)["step"] <= step:
                lines.append(line)
        last = json.loads(lines[-1])["step"] if lines else None
        if last != step:
            raise ValueError(
                f"{str(self.metrics_file)!r} ends at step {last} but the resume checkpoint is "
                f"at step {step}: rows are missing, and the checkpoint (from an older "
                "sparsetorch) keeps no copy to restore them from; train this run again in "
                "another --out"
            )
        return lines

    # result
    def write_result(self, result: dict[str, Any]) -> None:
        write_json(self.result_file, result)

    def read_result(self) -> dict[str, Any]:
        if not self.is_complete():
            raise FileNotFoundError(f"run dir {str(self.path)!r} has no {RESULT_FILE}: unfinished")
        return read_json(self.result_file)
