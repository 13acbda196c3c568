import os
import stat
import sys
import types
from typing import ClassVar

import numpy as np
import pytest
from matplotlib.image import imread

from sparsetorch.experiments import train
from sparsetorch.experiments.plots import (
    comparison_figure,
    curves_figure,
    plot_comparison,
    plot_curves,
    plot_densities,
)
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


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_plot_files_follow_the_umask(tmp_path, umask):
    from sparsetorch.algorithms.during import plot_churn

    old = os.umask(umask)
    try:
        paths = [
            plot_densities({"w": {"density": 0.5}}, tmp_path / "d.png"),
            plot_comparison([("x", ROWS)], tmp_path / "c.png"),
            plot_churn(
                [{"step": 1, "changed": 0.2, "overlap_init": 0.8}], tmp_path / "p" / "t.png"
            ),
        ]
    finally:
        os.umask(old)
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "d.png", "p"]  # no temp left


def test_a_one_epoch_run_is_drawn_with_markers_and_a_visible_early_stop():
    rows = [ROWS[0], {**ROWS[2], "step": 10}]  # the default evaluation of a short run before
    fig = curves_figure(rows, "lenet300 on digits, dense (seed 0)", early_stop=10)
    loss_ax, acc_ax = fig.axes
    lines = {line.get_label(): line for line in loss_ax.get_lines()}
    train = lines["train (mean over the steps since the last evaluation)"]
    assert list(train.get_xdata()) == [10] and train.get_marker() == "o"  # one point, visible
    curves = [line for line in acc_ax.get_lines() if line.get_label() != "early stop"]
    assert len(curves) == 2 and all(line.get_marker() in ("s", "^") for line in curves)
    assert loss_ax.get_xlim()[1] > 10 and acc_ax.get_xlim()[1] > 10  # early stop not on the edge
    assert fig._suptitle.get_text() == "lenet300 on digits, dense (seed 0)"


def test_comparison_draws_the_mean_of_seeds_with_a_band():
    seeds = [[{**r, "test_acc": r["test_acc"] + d} for r in ROWS] for d in (0.0, 0.1, 0.2)]
    fig = comparison_figure([("rigl", seeds), ("set", ROWS)], "t", colors=["tab:red", "tab:brown"])
    acc_ax, _ = fig.axes
    rigl, single = acc_ax.get_lines()
    assert rigl.get_label() == "rigl (3 seeds)" and single.get_label() == "set"
    np.testing.assert_allclose(rigl.get_ydata(), [r["test_acc"] + 0.1 for r in ROWS])
    (band,) = acc_ax.collections  # one band: the single run has none
    top = band.get_paths()[0].vertices[:, 1].max()
    assert top == pytest.approx(ROWS[2]["test_acc"] + 0.1 + 0.1)  # mean + sample std
    assert rigl.get_color() == "tab:red"


def test_lottery_early_stop_panel_spans_the_run_and_clips_its_band():
    from sparsetorch.lottery.summary import figure

    def row(branch, round_, remaining, es_step, std):
        return {
            "branch": branch, "round": round_, "seeds": [0, 1, 2], "remaining": remaining,
            "remaining_std": 0.0, "es_acc": 0.9, "es_acc_std": 0.05, "es_step": es_step,
            "es_step_std": std, "final_acc": 0.9, "final_acc_std": 0.0, "total_steps": 2751,
            "total_steps_std": 0.0, "eval_steps": [*range(0, 2751, 250), 2751],
        }  # fmt: skip

    rows = [row("ticket", 0, 1.0, 2500, 433), row("ticket", 1, 0.8, 2600, 400),
            row("ticket", 2, 0.64, 2000, 700)]  # fmt: skip
    fig = figure(rows, "lenet300 on fashion-mnist, rewind init, unstructured")
    acc_ax, step_ax = fig.axes
    assert step_ax.get_ylim() == pytest.approx((0, 2751 * 1.04))
    for band in step_ax.collections:  # never past the last step, never below 0
        ys = band.get_paths()[0].vertices[:, 1]
        assert ys.max() <= 2751 and ys.min() >= 0
    assert step_ax.get_title() == "evaluated every 250 steps"
    assert "end of run" in [line.get_label() for line in step_ax.get_lines()]
    for band in acc_ax.collections:
        assert band.get_paths()[0].vertices[:, 1].max() <= 100


def test_run_figures_are_titled_by_model_data_method_and_seed(tmp_path, monkeypatch):
    from sparsetorch.experiments import Hparams, reporting

    titles = []
    monkeypatch.setattr(
        reporting, "plot_curves", lambda rows, path, title, early: titles.append(title)
    )
    monkeypatch.setattr(
        reporting, "plot_densities", lambda layers, path, title: titles.append(title)
    )
    hp = Hparams()
    hp.dataset.name = "digits"
    hp.dataset.train_size, hp.dataset.val_size, hp.dataset.test_size = 64, 20, 20
    hp.training.batch_size, hp.training.steps, hp.training.seed = 32, 2, 3
    hp.sparsity.method, hp.sparsity.sparsity = "snip", 0.5
    result = train(hp, tmp_path)
    assert titles == [
        "lenet300 on digits, snip at sparsity 0.500 (seed 3)",
        "lenet300 on digits, snip at sparsity 0.500 (seed 3): density per layer",
    ]
    assert result.run_dir.name not in titles[0]
