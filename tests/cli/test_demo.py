import pytest

from sparsetorch.cli import demo as demo_cli
from sparsetorch.cli import main
from sparsetorch.data import load
from tests.data.test_idx import _fake_fashion_dir

SIZES = {"fc1.weight": 784 * 300, "fc2.weight": 300 * 100, "fc3.weight": 100 * 10}


def test_demo_on_a_fashion_mnist_slice(tmp_path):
    data = load("fashion-mnist").slice(600, 120, 120)  # 1 epoch = 10 steps of 60
    lines = []
    summary = demo_cli.run_demo(data, rounds=2, out_dir=tmp_path, progress=False, out=lines.append)
    rows = {(r["branch"], r["round"]): r for r in summary["rows"]}
    assert sorted(rows) == [
        ("reinit", 1),
        ("reinit", 2),
        ("ticket", 0),
        ("ticket", 1),
        ("ticket", 2),
    ]
    # 2 rounds at 50% (hidden) / 25% (output): 25%, 25% and 56.25% (562.5 -> 563) remain
    kept = {"fc1.weight": 58_800, "fc2.weight": 7_500, "fc3.weight": 563}
    assert rows[("ticket", 2)]["remaining"] == sum(kept.values()) / sum(SIZES.values())
    assert rows[("reinit", 2)]["remaining"] == rows[("ticket", 2)]["remaining"]
    report = summary["report"]
    assert [row.nnz for row in report.layers] == list(kept.values())
    assert [row.numel for row in report.layers] == list(SIZES.values())
    text = "\n".join(lines)
    assert summary["table"] in text
    assert f"figure: {summary['figure']}" in text and summary["figure"].endswith("lottery.png")
    assert text.count("seed 0 ticket round") == 3 and text.count("seed 0 reinit round") == 2
    assert str(report) in text
    with open(summary["figure"], "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_cli_flags_reach_the_demo(tmp_path, monkeypatch):
    data_dir = _fake_fashion_dir(tmp_path, n_train=5000 + 256, n_test=100)
    seen = {}

    def fake_run_demo(data, **kw):
        seen.update(train=len(data.train), test=len(data.test), **kw)

    monkeypatch.setattr(demo_cli, "run_demo", fake_run_demo)
    argv = ["demo", "--rounds", "2", "--epochs", "3", "--seed", "7", "--data-dir", str(data_dir),
            "--out", str(tmp_path / "o"), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert seen == {
        "train": 256,
        "test": 100,
        "rounds": 2,
        "epochs": 3,
        "seed": 7,
        "out_dir": str(tmp_path / "o"),
        "progress": False,
    }


def test_cli_end_to_end_on_a_data_dir(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    data_dir = _fake_fashion_dir(tmp_path / "data", n_train=5000 + 120, n_test=60)
    argv = ["demo", "--rounds", "1", "--data-dir", str(data_dir), "--out", str(tmp_path / "o")]
    assert main([*argv, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "(120 training images)" in out and "table:  " in out and "figure: " in out
    assert "round  weights remaining %" in out and "The round-1 ticket" in out


def test_cli_help_and_bad_input(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    help_text = capsys.readouterr().out
    for flag in ("--rounds", "--epochs", "--seed", "--out", "--progress", "--data-dir"):
        assert flag in help_text
    data_dir = _fake_fashion_dir(tmp_path, n_train=5000 + 10, n_test=10)
    for flag in ("--epochs", "--rounds"):
        assert main(["demo", flag, "0", "--data-dir", str(data_dir)]) == 2
        assert f"{flag} must be an int >= 1, got 0" in capsys.readouterr().err
