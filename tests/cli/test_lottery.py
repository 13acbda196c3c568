import json

import pytest
import torch

from sparsetorch.cli import main

TINY = ["--dataset", "digits", "--train-size", "120", "--val-size", "40", "--test-size", "40",
        "--batch-size", "20", "--steps", "8", "--eval-every", "4"]  # fmt: skip


def test_help_lists_lottery_and_training_flags_only(capsys):
    with pytest.raises(SystemExit):
        main(["lottery", "--help"])
    text = capsys.readouterr().out
    for flag in (
        *["--rounds", "--prune-rate", "--layer-rate", "--scope", "--pattern", "--rewind"],
        *["--seeds", "--controls", "--out", "--run-dir", "--config", "--device", "--threads"],
        *["--progress", "--model", "--dataset", "--lr", "--epochs", "--steps", "--data-seed"],
    ):
        assert flag in text, flag
    for flag in ("--method ", "--sparsity ", "--distribution ", "--seed "):
        assert flag not in text  # IMP prunes by itself; --seeds replaces --seed


def test_lottery_run_prints_table_and_report_repeats_it(tmp_path, capsys):
    argv = ["lottery", *TINY, "--rounds", "2", "--prune-rate", "0.5", "--layer-rate",
            "output=0.25", "--rewind", "4", "--seeds", "0,1", "--controls", "reinit",
            "--out", str(tmp_path), "--no-progress", "--threads", "1"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    (run_dir,) = tmp_path.iterdir()
    config = json.loads((run_dir / "lottery.json").read_text())
    assert config["lottery"] == {
        "rounds": 2,
        "prune_rate": 0.5,
        "layer_rates": {"output": 0.25},
        "scope": "layerwise",
        "pattern": "unstructured",
        "rewind": "4",
        "seeds": [0, 1],
        "controls": ["reinit"],
    }
    assert config["hparams"]["training"]["steps"] == 8
    assert config["plan"]["rewind_step"] == 4
    assert config["plan"]["rates"] == {"fc1.weight": 0.5, "fc2.weight": 0.5, "fc3.weight": 0.25}
    assert out.count("seed 0 ticket round") == 3 and out.count("seed 1 reinit round") == 2
    assert f"figure: {run_dir / 'lottery.png'}" in out
    table = out[out.index("round  weights remaining") : out.index("table: ")]
    lines = table.strip().splitlines()
    assert len(lines) == 2 + 3  # header, rule, rounds 0..2
    # LeNet: 784*300 + 300*100 + 100*10 weights; round 2 keeps 25%, 25%, 56.25% (562.5 -> 563)
    assert lines[-1].split()[:2] == ["2", f"{100 * (58800 + 7500 + 563) / 266200:.2f}"]
    # ticket acc (early stop), its step, ticket acc (final), reinit; no random-prune asked for
    assert lines[-1].count("±") == 4 and "random-prune" not in lines[0]
    # running again reuses everything; `report` prints the same table
    assert main(argv) == 0
    assert "[reused]" in capsys.readouterr().out
    assert main(["report", str(run_dir)]) == 0
    assert table in capsys.readouterr().out


def test_scope_and_pattern_flags_reach_the_run(tmp_path, capsys):
    argv = ["lottery", *TINY, "--rounds", "1", "--scope", "global", "--pattern", "block2x2",
            "--prune-rate", "0.3", "--out", str(tmp_path), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    (run_dir,) = tmp_path.iterdir()
    config = json.loads((run_dir / "lottery.json").read_text())["lottery"]
    assert (config["scope"], config["pattern"], config["prune_rate"]) == ("global", "block2x2", 0.3)
    masks = torch.load(run_dir / "seed0" / "masks" / "round01.pt", weights_only=True)
    kept = sum(int(m.sum()) for m in masks.values())
    assert kept == 4 * round(0.7 * 266200 / 4)  # one global threshold over 2x2 blocks


def test_bad_input_exits_with_clear_errors(tmp_path, capsys):
    base = ["lottery", *TINY, "--out", str(tmp_path), "--no-progress"]
    assert main([*base, "--prune-rate", "1.5"]) == 2
    assert "prune_rate must be in (0, 1), got 1.5" in capsys.readouterr().err
    assert main([*base, "--rewind", "8"]) == 2
    assert "beyond the training length" in capsys.readouterr().err
    assert main([*base, "--controls", "reinit,shuffle"]) == 2
    assert "controls must be distinct names from reinit, random-prune" in capsys.readouterr().err
    assert main([*base, "--pattern", "2:4", "--rounds", "2"]) == 2
    assert "exactly one pruning round" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--layer-rate", "output"])
    assert "expected NAME=RATE" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
    run_dir = tmp_path / "mine"
    assert main([*base, "--rounds", "1", "--run-dir", str(run_dir)]) == 0
    capsys.readouterr()
    assert main([*base, "--rounds", "1", "--run-dir", str(run_dir), "--lr", "0.01"]) == 2
    assert "training.lr: 0.0012 (default) -> 0.01" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main([*base, "--rounds", "1", "--run-dir", str(tmp_path / "file" / "run")]) == 2
    err = capsys.readouterr().err
    assert f"cannot be created: {str(tmp_path / 'file')!r} is a file, not a directory" in err
    assert "Traceback" not in err
