"""Run dirs this sparsetorch cannot read (written before model checkpoints moved to
safetensors, or by another checkpoint format version) are refused with one clear error, and
their pickles are never opened."""

import json
import re

import pytest
import torch
from safetensors.torch import save_file

from sparsetorch.experiments import TrainHook, load_run, train
from sparsetorch.experiments import run_state as ckpt
from sparsetorch.experiments.run_state import latest_model_state


class Interrupt(TrainHook):
    """Dies right after update ``at`` (a crash mid-run); None = never."""

    def __init__(self, at=None):
        self.at = at

    def after_step(self, ctx, step):
        if step + 1 == self.at:
            raise KeyboardInterrupt


def make_old(run_dir):
    """Rewrite a run dir the way sparsetorch wrote it before commit d41215a: model states as
    ``torch.save`` pickles named ``model_step<k>.pt``, and result.json pointing at them."""
    for step, path in ckpt.saved_model_states(run_dir).items():
        torch.save(ckpt.load_model_state(path), path.with_name(f"model_step{step}.pt"))
        path.unlink()
    result_file = run_dir / "result.json"
    if result_file.is_file():
        result = json.loads(result_file.read_text())
        result["states"] = {
            k: v.replace(".safetensors", ".pt") for k, v in result["states"].items()
        }
        result_file.write_text(json.dumps(result))


@pytest.fixture
def no_unpickling(monkeypatch):
    """Any torch.load fails the test: an unreadable run dir is refused before loading."""

    def forbidden(*args, **kwargs):
        raise AssertionError(f"torch.load called on {args[:1]}")

    monkeypatch.setattr(torch, "load", forbidden)


def refused(run_dir, found):
    """The one error: names the run dir, what was found, and what to do."""
    return (
        rf"run dir {re.escape(repr(str(run_dir)))} cannot be used by this sparsetorch: "
        rf"{found}.*delete it or use another --out"
    )


def test_finished_run_dir_with_pickled_model_states_is_refused(tmp_path, tiny_hp, digits, request):
    run_dir = train(tiny_hp, tmp_path, dataset=digits).run_dir
    make_old(run_dir)
    request.getfixturevalue("no_unpickling")
    message = refused(run_dir, r"checkpoints/model_step0.pt is a torch.save pickle")
    with pytest.raises(ValueError, match=message):
        train(tiny_hp, tmp_path, dataset=digits)  # reuse
    with pytest.raises(ValueError, match=message):
        load_run(run_dir)
    with pytest.raises(ValueError, match=message):
        latest_model_state(run_dir)  # sparsetorch export / report


def test_unfinished_old_run_dir_is_refused_instead_of_resumed(tmp_path, tiny_hp, digits, request):
    # before the fix it resumed from resume.pt, silently dropping the pickled step-0 weights
    with pytest.raises(KeyboardInterrupt):
        train(tiny_hp, tmp_path, hooks=[Interrupt(at=8)], dataset=digits)
    (run_dir,) = tmp_path.iterdir()
    make_old(run_dir)
    assert (run_dir / "checkpoints" / "model_step0.pt").is_file()
    request.getfixturevalue("no_unpickling")
    with pytest.raises(
        ValueError, match=refused(run_dir, r"checkpoints/model_step0.pt is a torch")
    ):
        train(tiny_hp, tmp_path, hooks=[Interrupt()], dataset=digits)


def test_pickle_under_a_safetensors_name_is_refused(tmp_path, tiny_hp, digits, no_unpickling):
    run_dir = train(tiny_hp, tmp_path, dataset=digits).run_dir
    path = ckpt.model_state_path(run_dir, 12)
    torch.save({"w": torch.ones(3)}, path)  # torch.save itself is not patched
    with pytest.raises(
        ValueError,
        match=refused(run_dir, r"checkpoints/model_step12.safetensors is a torch.save pickle"),
    ):
        train(tiny_hp, tmp_path, dataset=digits)


@pytest.mark.parametrize(
    ("metadata", "found"),
    [
        (None, r"checkpoints/model_step0.safetensors has no sparsetorch format version"),
        (
            {"format_version": 99},
            r"checkpoints/model_step0.safetensors cannot be read \(written in checkpoint format "
            r"version 99 by sparsetorch 9.9; .* upgrade sparsetorch\)",
        ),
    ],
)
def test_missing_or_unknown_format_version_is_refused(tmp_path, tiny_hp, digits, metadata, found):
    from sparsetorch.checkpoint.header import metadata_json

    run_dir = train(tiny_hp, tmp_path, dataset=digits).run_dir
    meta = (
        None
        if metadata is None
        else metadata_json({**metadata, "sparsetorch": "9.9", "tensors": {}})
    )
    save_file({"w": torch.ones(3)}, ckpt.model_state_path(run_dir, 0), metadata=meta)
    with pytest.raises(ValueError, match=refused(run_dir, found)):
        train(tiny_hp, tmp_path, dataset=digits)


def test_resume_checkpoint_of_another_format_names_the_run_dir(tmp_path, tiny_hp, digits):
    with pytest.raises(KeyboardInterrupt):
        train(tiny_hp, tmp_path, hooks=[Interrupt(at=8)], dataset=digits)
    (run_dir,) = tmp_path.iterdir()
    state = torch.load(ckpt.resume_path(run_dir), weights_only=True)
    del state["format"]
    torch.save(state, ckpt.resume_path(run_dir))
    with pytest.raises(
        ValueError,
        match=refused(
            run_dir,
            r"checkpoints/resume.pt is not a resume checkpoint of this version \(resume format None",
        ),
    ):
        train(tiny_hp, tmp_path, hooks=[Interrupt()], dataset=digits)


def test_current_run_dirs_pass_the_check(tmp_path, tiny_hp, digits, no_unpickling):
    first = train(tiny_hp, tmp_path, dataset=digits, save_states_at=(3,))
    ckpt.check_run_dir(first.run_dir)  # reading headers only: no torch.load
    assert ckpt.check_run_dir(tmp_path / "absent") is None


@pytest.mark.parametrize(
    "where",
    [
        "../outside.safetensors",
        "../../outside.safetensors",
        "checkpoints/../../outside.safetensors",
        "/ABSOLUTE/outside.safetensors",
    ],
)
def test_result_states_outside_the_run_dir_are_refused(tmp_path, tiny_hp, digits, where):
    result = train(tiny_hp, tmp_path / "runs", dataset=digits)
    run_dir = result.run_dir
    outside = tmp_path / "outside.safetensors"  # a real checkpoint, so only the path is wrong
    outside.write_bytes(ckpt.model_state_path(run_dir, 12).read_bytes())
    (run_dir.parent / "outside.safetensors").write_bytes(outside.read_bytes())
    where = where.replace("/ABSOLUTE", str(tmp_path))
    info = json.loads((run_dir / "result.json").read_text())
    info["states"]["12"] = where
    (run_dir / "result.json").write_text(json.dumps(info))
    found = rf"result.json lists the model state {re.escape(repr(where))} outside the run dir"
    with pytest.raises(ValueError, match=refused(run_dir, found)):
        load_run(run_dir)
    with pytest.raises(ValueError, match=refused(run_dir, found)):
        train(tiny_hp, tmp_path / "runs", dataset=digits)  # the reuse of a finished run


def rename_masks_old(run_dir):
    """Rewrite a run dir's model states and resume checkpoint with masks under their old
    buffer name ``<param>_mask`` (as sparsetorch wrote them before ``_sparsity_mask``)."""
    from sparsetorch.checkpoint import load as st_load
    from sparsetorch.checkpoint import save as st_save
    from sparsetorch.masking import LEGACY_SUFFIX, SUFFIX

    def old(state):
        return {k.replace(SUFFIX, LEGACY_SUFFIX): v for k, v in state.items()}

    renamed = 0
    for path in ckpt.saved_model_states(run_dir).values():
        state = old(st_load(path))
        renamed += sum(k.endswith("weight_mask") for k in state)
        st_save(state, path)
    if ckpt.resume_path(run_dir).is_file():
        state = torch.load(ckpt.resume_path(run_dir), weights_only=True)
        state["model"] = old(state["model"])
        renamed += sum(k.endswith("weight_mask") for k in state["model"])
        ckpt.atomic_save(state, ckpt.resume_path(run_dir))
    return renamed


def test_run_dirs_with_old_mask_names_resume_and_reload_exactly(tmp_path, tiny_hp, digits):
    tiny_hp.sparsity.method, tiny_hp.sparsity.sparsity = "rigl", 0.8
    tiny_hp.sparsity.options = {"delta_t": 2}
    whole = train(tiny_hp, tmp_path / "whole", dataset=digits)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_hp, tmp_path / "cut", hooks=[Interrupt(at=8)], dataset=digits)
    (run_dir,) = (tmp_path / "cut").iterdir()
    assert rename_masks_old(run_dir) > 0
    resumed = train(tiny_hp, tmp_path / "cut", hooks=[Interrupt()], dataset=digits)
    assert not resumed.reused and resumed.run_dir == run_dir  # resumed from the old names
    for key, value in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    assert rename_masks_old(run_dir) > 0  # a finished old run dir: reused and reloaded
    again = load_run(run_dir)
    assert sorted(k for k in again.model.state_dict() if "mask" in k) == [
        "fc1.weight_sparsity_mask", "fc2.weight_sparsity_mask", "fc3.weight_sparsity_mask",
    ]  # fmt: skip
    for key, value in whole.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[key], value), key
    step, state = latest_model_state(run_dir)
    assert step == 12 and "fc1.weight_mask" in state  # the file as stored
