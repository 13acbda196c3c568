import json
import re
import shutil
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
    assert f"wall time: {result['wall_s']:.1f} s\n" in out  # the run's, as its summary says
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
    assert re.search(r"wall time: [0-9.]+ s so far", out)


def test_compare_prints_a_table_and_writes_a_plot(runs, tmp_path, capsys):
    dense, sparse = runs
    plot = tmp_path / "cmp.png"
    argv = ["report", str(dense.run_dir), "--compare", str(sparse.run_dir), "--plot", str(plot)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    # groups are named by what tells them apart, not by their hashes
    rows = {line.split("  ")[0]: line for line in out.splitlines() if line.startswith("lr ")}
    assert rows.keys() == {"lr 0.0012", "lr 0.003, given masks"}
    assert f"{dense.final['test_acc']:.4f}" in rows["lr 0.0012"]
    assert f"{sparse.final['sparsity']:.3f}" in rows["lr 0.003, given masks"]
    assert f"lr 0.0012: {dense.run_dir.name}" in out
    assert f"comparison plot: {plot}" in out
    assert_png_with_content(plot)


def test_compare_shows_a_finished_run_s_whole_wall_time(runs, tmp_path, capsys):
    """The run's wall time from its result (what `report RUN` says), not its last
    evaluation's: a copy whose result says 123.4 s shows 123.4."""
    dense, _ = runs
    copy = tmp_path / dense.run_dir.name
    shutil.copytree(dense.run_dir, copy)
    result = json.loads((copy / "result.json").read_text())
    result["wall_s"] = 123.4
    (copy / "result.json").write_text(json.dumps(result))
    assert main(["report", "--compare", str(copy), "--plot", str(tmp_path / "p.png")]) == 0
    (row,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("lenet300 ")]
    assert row.rstrip().endswith("123.4")


def test_compare_writes_next_to_the_runs_not_into_the_working_dir(runs, tmp_path, capsys,
                                                                   monkeypatch):  # fmt: skip
    dense, sparse = runs
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--compare", str(dense.run_dir), str(sparse.run_dir)]) == 0
    assert f"comparison plot: {dense.run_dir / 'comparison.png'}" in capsys.readouterr().out
    assert_png_with_content(dense.run_dir / "comparison.png")
    assert not (tmp_path / "comparison.png").exists()


def test_compare_a_parent_dir_aggregates_seeds(tmp_path_factory, capsys):
    import statistics

    out = tmp_path_factory.mktemp("seeds")
    results = {}
    for lr in (1.2e-3, 3e-3):
        for seed in (0, 1, 2):
            hp = tiny(lr)
            hp.training.seed = seed
            results[lr, seed] = train(hp, out)
    assert main(["report", "--compare", str(out)]) == 0
    text = capsys.readouterr().out
    rows = {line.split("  ")[0]: line for line in text.splitlines() if line.startswith("lr ")}
    assert rows.keys() == {"lr 0.0012", "lr 0.003"}
    for lr, label in ((1.2e-3, "lr 0.0012"), (3e-3, "lr 0.003")):
        accs = [results[lr, seed].final["test_acc"] for seed in (0, 1, 2)]
        expected = f"{statistics.fmean(accs):.4f} ± {statistics.stdev(accs):.4f}"
        assert expected in rows[label] and rows[label].split()[2] == "3"  # seeds
    assert f"comparison plot: {out / 'comparison.png'}" in text  # into the parent given
    assert_png_with_content(out / "comparison.png")
    assert main(["report", str(out)]) == 2  # a parent is not a run: say how to compare it
    assert f"sparsetorch report --compare {out}" in capsys.readouterr().err


def test_report_survives_a_closed_pipe(tmp_path):
    """``sparsetorch report FILE | head``: no BrokenPipeError traceback."""
    import subprocess

    from sparsetorch.checkpoint import save

    path = tmp_path / "many.safetensors"
    save({f"t{i:04d}": torch.zeros(2) for i in range(3000)}, path)  # a table > a pipe's 64 KiB
    proc = subprocess.Popen(
        [sys.executable, "-m", "sparsetorch", "report", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    first = proc.stdout.readline()
    proc.stdout.close()  # what `head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=600) == 141
    assert first.startswith(b"many.safetensors: sparsetorch checkpoint format")
    assert "Traceback" not in err and "BrokenPipeError" not in err and err == ""


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
        (["--compare", "{empty}"], "is not a run dir (no hparams.json) and holds none"),
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


def test_compare_skips_a_run_without_evaluations_and_says_so(runs, tmp_path, capsys):
    dense, _ = runs
    started = tmp_path / "lenet300-dense-0000000000"
    started.mkdir()
    (started / "hparams.json").write_text((dense.run_dir / "hparams.json").read_text())
    argv = [
        "report",
        "--compare",
        str(dense.run_dir),
        str(started),
        "--plot",
        str(tmp_path / "p.png"),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"not compared (no evaluation yet): {started.name}" in out
    assert main(["report", "--compare", str(started)]) == 2
    assert "has metrics yet" in capsys.readouterr().err
