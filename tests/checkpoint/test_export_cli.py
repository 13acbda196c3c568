import pytest
import torch
from torch import nn

from sparsetorch.checkpoint import load, report_file
from sparsetorch.cli import main
from sparsetorch.experiments.run_state import model_state_path, save_model_state
from sparsetorch.masking import apply_masks
from tests.checkpoint.helpers import assert_bitwise


def _run_dir(tmp_path):
    run_dir = tmp_path / "run"
    models = {}
    for step, density in ((10, 0.5), (20, 0.1)):
        torch.manual_seed(step)
        model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
        apply_masks(model, {"0.weight": torch.rand(32, 64) < density})
        save_model_state(model, model_state_path(run_dir, step))
        models[step] = model
    return run_dir, models


def test_export_writes_the_newest_model_state(tmp_path, capsys):
    run_dir, models = _run_dir(tmp_path)
    out = tmp_path / "new" / "dir" / "model.safetensors"  # its directory is made, as prune's
    assert main(["export", str(run_dir), "--out", str(out)]) == 0
    assert_bitwise(load(out), models[20].state_dict())
    printed = capsys.readouterr().out
    assert f"exported step 20 of {run_dir} to {out}: {out.stat().st_size:,} bytes" in printed
    assert "encoding" not in printed  # no table without --report


def test_export_default_path_and_report(tmp_path, capsys):
    run_dir, models = _run_dir(tmp_path)
    assert main(["export", str(run_dir), "--report"]) == 0
    out = run_dir / "model.safetensors"
    assert_bitwise(load(out), models[20].state_dict())
    assert report_file(out) in capsys.readouterr().out


def test_export_errors(tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing")]) == 2
    assert "run dir" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["export", str(tmp_path / "empty")]) == 2
    assert "holds no checkpoint" in capsys.readouterr().err


def test_export_help_lists_every_flag(capsys):
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    text = capsys.readouterr().out
    for flag in ("RUN_DIR", "--out", "--report"):
        assert flag in text


def test_export_ratio_is_against_the_plain_model(tmp_path, capsys):
    run_dir, _ = _run_dir(tmp_path)
    out = tmp_path / "model.safetensors"
    assert main(["export", str(run_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    plain = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))  # no masks
    dense = sum(t.numel() * t.element_size() for t in plain.state_dict().values())
    assert dense == (64 * 32 + 32 + 32 * 10 + 10) * 4
    size = out.stat().st_size
    assert f"{size / dense:.3f}x the {dense:,} bytes of the plain model" in printed
    with_masks = dense + 64 * 32  # the bool mask counted as a dense byte each: the old ratio
    assert f"{size / with_masks:.3f}x" not in printed
