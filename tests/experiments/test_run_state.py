import pickle

import pytest
import torch
from torch import nn

from sparsetorch.experiments import run_state as ckpt
from sparsetorch.masking import apply_masks, get_masks


class Unsafe:
    """Not loadable with weights_only=True."""


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "state.pt"
    ckpt.atomic_save({"a": torch.ones(2)}, path)
    with pytest.raises((pickle.PicklingError, AttributeError)):  # lambdas cannot be pickled
        ckpt.atomic_save({"a": lambda: 0}, path)
    assert torch.equal(ckpt.safe_load(path)["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]  # no temp file left


def test_safe_load_refuses_bad_and_unsafe_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ckpt.safe_load(tmp_path / "missing.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"garbage.pt' cannot be read"):
        ckpt.safe_load(tmp_path / "garbage.pt")
    torch.save({"x": Unsafe()}, tmp_path / "unsafe.pt")
    with pytest.raises(ValueError, match=r"unsafe.pt' cannot be read"):
        ckpt.safe_load(tmp_path / "unsafe.pt")


def masked_mlp() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2))
    apply_masks(model, {"0.weight": torch.rand(5, 6) < 0.5})
    return model


def test_model_state_round_trip_restores_masks_exactly(tmp_path):
    model = masked_mlp()
    path = ckpt.save_model_state(model, ckpt.model_state_path(tmp_path, 7))
    assert path == tmp_path / "checkpoints" / "model_step7.safetensors"
    # the runner writes sparsetorch's compressed format: the masked weight is stored encoded
    from sparsetorch.checkpoint import report_file

    assert "0.weight" in report_file(path)
    fresh = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2))
    ckpt.load_into(fresh, ckpt.load_model_state(path))
    assert torch.equal(get_masks(fresh)["0.weight"], get_masks(model)["0.weight"])
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value)


def test_latest_model_state_prefers_the_newest(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        ckpt.latest_model_state(tmp_path)
    model = masked_mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ckpt.save_model_state(model, ckpt.model_state_path(tmp_path, 0))
    with torch.no_grad():
        model[2].weight.add_(1)
    ckpt.save_resume(ckpt.resume_path(tmp_path), step=5, model=model, optimizer=opt, hooks=[],
                     wall_s=1.0)  # fmt: skip
    step, state = ckpt.latest_model_state(tmp_path)
    assert step == 5 and torch.equal(state["2.weight"], model[2].weight)
    ckpt.save_model_state(model, ckpt.model_state_path(tmp_path, 10))
    assert ckpt.latest_model_state(tmp_path)[0] == 10


def test_resume_round_trip_restores_optimizer_and_rng(tmp_path):
    model = masked_mlp()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(3, 6)).sum().backward()
    opt.step()
    torch.manual_seed(42)
    ckpt.save_resume(ckpt.resume_path(tmp_path), step=1, model=model, optimizer=opt,
                     hooks=[{"n": 3}], wall_s=2.5)  # fmt: skip
    expected_draw = torch.rand(3)
    state = ckpt.load_resume(ckpt.resume_path(tmp_path))
    assert (state["step"], state["hooks"], state["wall_s"]) == (1, [{"n": 3}], 2.5)
    fresh = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2))
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=0.01)
    ckpt.restore_resume(state, fresh, fresh_opt)
    assert torch.equal(torch.rand(3), expected_draw)
    a, b = opt.state_dict()["state"], fresh_opt.state_dict()["state"]
    assert all(torch.equal(a[i]["exp_avg"], b[i]["exp_avg"]) for i in a)
    (tmp_path / "other.pt").write_bytes(b"")
    ckpt.atomic_save({"step": 3}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a resume checkpoint"):
        ckpt.load_resume(tmp_path / "other.pt")


def test_a_distributed_run_s_checkpoint_says_how_to_resume_it(tmp_path):
    path = tmp_path / "checkpoints" / "resume.pt"
    path.parent.mkdir()
    ckpt.atomic_save({"format": "dcp-1"}, path)
    with pytest.raises(ValueError, match=r"a distributed run.*torchrun --nproc_per_node 1"):
        ckpt.load_resume(path)


def test_the_same_object_saved_twice_gives_the_same_bytes(tmp_path):
    """Resumed runs write every mask file bitwise equal to an uninterrupted run's: the archive
    must not carry the random temp file's name."""
    obj = {"mask": torch.arange(12).reshape(3, 4) % 2 == 0, "step": 7}
    a, b = ckpt.atomic_save(obj, tmp_path / "a.pt"), ckpt.atomic_save(obj, tmp_path / "b.pt")
    assert a.read_bytes() == b.read_bytes()
    assert torch.equal(ckpt.safe_load(a)["mask"], obj["mask"])
