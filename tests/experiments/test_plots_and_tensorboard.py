import sys
import types
from typing import ClassVar

import numpy as np
import pytest
from matplotlib.image import imread

from sparsetorch.experiments import train
from sparsetorch.experiments.plots import plot_comparison, plot_curves, plot_densities
from sparsetorch.experiments.tensorboard import open_tensorboard

ROWS = [
    {"step": 0, "train_loss": None, "val_loss": 2.3, "test_loss": 2.3, "val_acc": 0.1, "test_acc": 0.1},
    {"step": 5, "train_loss": 1.0, "val_loss": 0.8, "test_loss": 0.9, "val_acc": 0.7, "test_acc": 0.6},
    {"step": 9, "train_loss": 0.5, "val_loss": 0.9, "test_loss": 0.7, "val_acc": 0.8, "test_acc": 0.8},
]  # fmt: skip


def assert_png_with_content(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = np.asarray(imread(path))
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels.std() > 0.05


def test_plots_are_non_empty_pngs(tmp_path):
    assert_png_with_content(plot_curves(ROWS, tmp_path / "c.png", "title", early_stop=5))
    layers = {"a.weight": {"density": 0.1}, "b.weight": {"density": 0.95}}
    assert_png_with_content(plot_densities(layers, tmp_path / "d.png"))
    assert_png_with_content(plot_comparison([("x", ROWS), ("y", ROWS[:2])], tmp_path / "x.png"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "d.png", "x.png"]


def test_plots_differ_when_data_differ(tmp_path):
    a = plot_densities({"w": {"density": 0.1}}, tmp_path / "a.png")
    b = plot_densities({"w": {"density": 0.9}}, tmp_path / "b.png")
    assert not np.array_equal(imread(a), imread(b))


def test_tensorboard_is_skipped_when_not_installed(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    assert open_tensorboard(tmp_path) is None


class FakeWriter:
    instances: ClassVar[list] = []

    def __init__(self, log_dir):
        self.log_dir, self.scalars, self.closed = log_dir, [], False
        FakeWriter.instances.append(self)

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))

    def flush(self):
        pass

    def close(self):
        self.closed = True


def test_tensorboard_logs_every_numeric_metric_when_installed(
    monkeypatch, tmp_path, tiny_hp, digits
):
    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    result = train(tiny_hp, tmp_path, dataset=digits)
    (writer,) = FakeWriter.instances
    assert writer.log_dir == str(result.run_dir / "tensorboard") and writer.closed
    logged = {(tag, step): value for tag, value, step in writer.scalars}
    for row in result.metrics:
        assert logged[("val_acc", row["step"])] == row["val_acc"]
        assert logged[("sparsity", row["step"])] == row["sparsity"]
    assert ("train_loss", 0) not in logged  # None at step 0 is not a scalar
    assert logged[("train_loss", 12)] == pytest.approx(result.final["train_loss"])
