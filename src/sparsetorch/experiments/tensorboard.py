"""Optional TensorBoard logging of the evaluation rows: used when the ``tensorboard`` package
is installed, skipped silently when it is not (it is not a dependency)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TENSORBOARD_DIR = "tensorboard"


class TensorBoardLog:
    """Writes every numeric field of a metrics row as a scalar at the row's step."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer

    def __call__(self, row: dict[str, Any]) -> None:
        for key, value in row.items():
            if key != "step" and isinstance(value, int | float) and not isinstance(value, bool):
                self.writer.add_scalar(key, value, row["step"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def open_tensorboard(run_dir: str | Path) -> TensorBoardLog | None:
    """A logger writing to ``run_dir/tensorboard``, or None without the tensorboard package."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return TensorBoardLog(SummaryWriter(log_dir=str(Path(run_dir) / TENSORBOARD_DIR)))
