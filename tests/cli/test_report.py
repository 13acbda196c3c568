import json
import sys
import types

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from sparsetorch.cli import main
from sparsetorch.experiments import Hparams, TrainHook, train
from sparsetorch.experiments.layers import layer_densities


def tiny(lr=1.2e-3):
    hp = Hparams()
    hp.dataset.name = "digits"
    hp.dataset.train_size, hp.dataset.val_size, hp.dataset.test_size = 128, 50, 50
    hp.training.batch_size, hp.training.steps, hp.training.eval_every = 32, 6, 3
    hp.training.lr = lr
    return hp


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    dense = train(tiny(), out)
    masks = {"fc1.weight": torch.rand(300, 784, generator=torch.Generator().manual_seed(0)) < 0.25}
    sparse = train(tiny(lr=3e-3), out, masks=masks)
    return dense, sparse


def assert_png_with_content(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = imread(path)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert np.asarray(pixels).std() > 0.05  # not a blank canvas


def test_report_prints_summary_and_per_layer_sparsity(runs, capsys):
    _, sparse = runs
    assert main(["report", str(sparse.run_dir)]) == 0
    out = capsys.readouterr().out
    result = json.loads((sparse.run_dir / "result.json").read_text())
    assert f"run {sparse.run_dir}  [finished]" in out
    assert f"{result['final']['test_acc']:.4f}" in out
    assert "inputs.masks=" in out and "training.lr=0.003" in out
    density = layer_densities(sparse.model)["fc1.weight"]["density"]
    assert density == pytest.approx(0.25, abs=0.01)
    (fc1,) = [line for line in out.splitlines() if line.startswith("fc1.weight")]
    assert f"{density:.4f}" in fc1


def test_report_of_an_unfinished_run(tmp_path, capsys):
    class Stop(TrainHook):
        def after_step(self, ctx, step):
            if step == 4:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny(), run_dir=tmp_path / "run", hooks=[Stop()])
    assert main(["report", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "[unfinished (3 of 6 steps)]" in out and "model at step 3" in out


def test_compare_prints_a_table_and_writes_a_plot(runs, tmp_path, capsys):
    dense, sparse = runs
    plot = tmp_path / "cmp.png"
    argv = ["report", str(dense.run_dir), "--compare", str(sparse.run_dir), "--plot", str(plot)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("lenet300-")}
    assert rows.keys() == {dense.run_dir.name, sparse.run_dir.name}
    assert f"{dense.final['test_acc']:.4f}" in rows[dense.run_dir.name]
    assert f"{sparse.final['sparsity']:.3f}" in rows[sparse.run_dir.name]
    assert f"comparison plot: {plot}" in out
    assert_png_with_content(plot)


def test_run_dir_plots_and_report_md(runs):
    _, sparse = runs
    for name in ("curves.png", "density.png"):
        assert_png_with_content(sparse.run_dir / "plots" / name)
    report = (sparse.run_dir / "report.md").read_text()
    assert "| final | 6 |" in report and f"{sparse.final['test_acc']:.4f}" in report
    assert "| fc1.weight | 300x784 |" in report and "![curves](plots/curves.png)" in report


def test_safetensors_file_goes_to_the_checkpoint_report(tmp_path, capsys, monkeypatch):
    fake = types.ModuleType("sparsetorch.checkpoint")
    fake.report_file = lambda path: f"TABLE OF {path.name}"
    monkeypatch.setitem(sys.modules, "sparsetorch.checkpoint", fake)
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"")
    assert main(["report", str(path)]) == 0
    assert capsys.readouterr().out.strip() == "TABLE OF model.safetensors"


def test_real_safetensors_report(tmp_path, capsys):
    checkpoint = pytest.importorskip("sparsetorch.checkpoint")
    path = tmp_path / "m.safetensors"
    checkpoint.save({"w": torch.zeros(4, 4)}, path)
    assert main(["report", str(path)]) == 0
    assert capsys.readouterr().out.strip() == str(checkpoint.report_file(path)).strip()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["missing_dir"], "'missing_dir' does not exist"),
        ([], "give a run dir or .safetensors file"),
        (["--plot", "x.png", "."], "--plot is only used with --compare"),
        (["{file}"], "is a file but not a .safetensors checkpoint"),
        (["{empty}"], "is not a run dir (no hparams.json)"),
        (["--compare", "{empty}"], "is not a run dir (no hparams.json)"),
    ],
)
def test_bad_input(tmp_path, capsys, argv, message):
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    paths = {"file": tmp_path / "notes.txt", "empty": tmp_path / "empty"}
    argv = [a.format(**paths) for a in argv]
    assert main(["report", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sparsetorch report: error: ") and message in err
