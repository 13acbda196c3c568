"""``sparsetorch report --compare`` on lottery runs: one table line per ticket round of each
run, labelled by the settings that differ, seeds as mean ± std, and one figure."""

import re
import statistics

import numpy as np
import pytest
from matplotlib.image import imread

import sparsetorch as st
from sparsetorch.cli import main
from sparsetorch.experiments import Hparams
from sparsetorch.lottery import IMP, IMPConfig


@pytest.fixture(scope="module")
def lotteries(tmp_path_factory):
    data = st.data.load("fashion-mnist").slice(240, 60, 60)
    hp = Hparams()
    hp.training.steps, hp.training.eval_every, hp.training.batch_size = 20, 5, 24
    out = tmp_path_factory.mktemp("lotteries")
    runs = {}
    for rewind, seeds, controls in (("10", (0, 1), ("reinit",)), ("0", (0,), ())):
        config = IMPConfig(rounds=1, prune_rate=0.5, rewind=rewind, seeds=seeds, controls=controls)
        imp = IMP(hp, config, out_dir=out, dataset=data, progress=False)
        runs[rewind] = (imp, imp.run())
    return out, runs


def test_compare_lottery_runs(lotteries, capsys):
    out, runs = lotteries
    late, init = runs["10"][0].path, runs["0"][0].path
    assert main(["report", "--compare", str(late), str(init)]) == 0
    text = capsys.readouterr().out
    lines = [re.split(r"\s{2,}", line) for line in text.splitlines()]
    rows = {(cells[0], cells[2]): cells for cells in lines if cells[0].startswith("rewind ")}
    assert sorted(rows) == [("rewind 10", "0"), ("rewind 10", "1"), ("rewind init", "0"),
                            ("rewind init", "1")]  # fmt: skip
    assert rows["rewind 10", "1"][1] == "2" and rows["rewind init", "1"][1] == "1"  # seeds
    # the late-rewinding run has two seeds: mean ± std of their early-stop accuracies
    imp, _ = runs["10"]
    accs = [
        st.experiments.load_run(imp.dir.round_dir(seed, 1)).early_stop["test_acc"]
        for seed in (0, 1)
    ]
    expected = f"{100 * statistics.fmean(accs):.2f} ± {100 * statistics.stdev(accs):.2f}"
    assert rows["rewind 10", "1"][4] == expected
    assert f"comparison plot: {late / 'comparison.png'}" in text
    pixels = np.asarray(imread(late / "comparison.png"))
    assert pixels.shape[0] > 300 and pixels.std() > 0.05
    # a parent directory holding both
    assert main(["report", "--compare", str(out), "--plot", str(out / "both.png")]) == 0
    assert (out / "both.png").is_file() and "rewind init" in capsys.readouterr().out


def test_lottery_and_plain_runs_are_not_mixed(lotteries, capsys):
    _, runs = lotteries
    imp, _ = runs["0"]
    round_dir = imp.dir.round_dir(0, 1)
    assert main(["report", "--compare", str(imp.path), str(round_dir)]) == 2
    assert "cannot compare lottery runs with plain run dirs" in capsys.readouterr().err


def test_lottery_summary_shows_as_a_table_and_figure(lotteries):
    import base64

    from tests.test_notebook_reprs import Cells

    _, runs = lotteries
    imp, summary = runs["10"]
    assert isinstance(summary, dict) and summary["rows"]  # still the dict it was
    parsed = Cells(summary._repr_html_())
    assert parsed.rows == [summary["header"], *summary["body"]]
    (image,) = parsed.images
    figure = (imp.path / "lottery.png").read_bytes()
    assert base64.b64decode(image.removeprefix("data:image/png;base64,")) == figure
    assert summary._repr_markdown_().startswith(f"**Lottery tickets: {summary['title']}**")
    assert summary["body"][1][2] in summary._repr_markdown_()
