"""metrics.jsonl is written durably and in step with the resume checkpoint: each row is fsynced
before the checkpoint that counts it, the checkpoint keeps a copy of every row so far, and a
resume that finds the file disagreeing with it (a corrupt line, rows lost to a power cut)
rewrites it from that copy with a warning. It never silently drops a row: where there is no
copy (an older checkpoint), the resume refuses with a message and leaves the file alone."""

import json
import os
import warnings

import pytest
import torch

from sparsetorch.experiments import TrainHook, load_run, train
from sparsetorch.experiments.result import NONDETERMINISTIC
from sparsetorch.experiments.run_state import atomic_save, load_resume, resume_path
from sparsetorch.experiments.rundir import RunDir


class Interrupt(TrainHook):
    """Dies (Ctrl-C) right after update ``at``; None = never."""

    def __init__(self, at=None):
        self.at = at

    def after_step(self, ctx, step):
        if step + 1 == self.at:
            raise KeyboardInterrupt


def strip(rows):
    return [{k: v for k, v in r.items() if k not in NONDETERMINISTIC} for r in rows]


@pytest.fixture
def reference(tmp_path, tiny_hp, digits):
    return train(tiny_hp, tmp_path / "ref", hooks=[Interrupt()], dataset=digits)


def _interrupted(tmp_path, tiny_hp, digits):
    """A run dir killed after update 8 (its checkpoint is at step 6: rows 0, 3, 6)."""
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_hp, out, hooks=[Interrupt(at=8)], dataset=digits)
    (run_dir,) = out.iterdir()
    assert load_resume(resume_path(run_dir))["step"] == 6
    return out, run_dir


def _lines(run_dir):
    return (run_dir / "metrics.jsonl").read_text().splitlines()


def _resume(out, tiny_hp, digits):
    return train(tiny_hp, out, hooks=[Interrupt()], dataset=digits)


def _same_result(result, reference):
    assert strip(result.metrics) == strip(reference.metrics)
    on_disk = [json.loads(line) for line in _lines(result.run_dir)]
    assert strip(on_disk) == strip(reference.metrics)
    done = json.loads((result.run_dir / "result.json").read_text())
    want = json.loads((reference.run_dir / "result.json").read_text())
    for key in ("final", "early_stop"):
        assert strip([done[key]]) == strip([want[key]])


def test_a_corrupt_line_in_the_middle_is_repaired_from_the_checkpoint(
    tmp_path, tiny_hp, digits, reference
):
    out, run_dir = _interrupted(tmp_path, tiny_hp, digits)
    lines = _lines(run_dir)
    assert len(lines) == 3
    lines[1] = lines[1][:20] + "\x00garbage"  # step 3's row, torn by a disk error
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.warns(
        UserWarning, match=r"metrics.jsonl' disagreed .* \(line 2 differs\): rewritten"
    ):
        result = _resume(out, tiny_hp, digits)
    _same_result(result, reference)


def test_rows_lost_to_a_power_cut_are_restored(tmp_path, tiny_hp, digits, reference):
    out, run_dir = _interrupted(tmp_path, tiny_hp, digits)
    (run_dir / "metrics.jsonl").write_text(_lines(run_dir)[0] + "\n")  # only step 0 survived
    with pytest.warns(
        UserWarning, match=r"metrics.jsonl' disagreed .* \(it holds 1 of the 3 rows\): rewritten"
    ):
        result = _resume(out, tiny_hp, digits)
    _same_result(result, reference)
    (run_dir / "metrics.jsonl").unlink()  # and a file lost entirely (then the run finished)
    assert load_run(run_dir).metrics == []


def test_a_row_after_the_checkpoint_is_recomputed_without_a_warning(
    tmp_path, tiny_hp, digits, reference
):
    out, run_dir = _interrupted(tmp_path, tiny_hp, digits)
    with (run_dir / "metrics.jsonl").open("a") as f:  # killed between the row and resume.pt
        f.write(json.dumps({**json.loads(_lines(run_dir)[-1]), "step": 9}) + "\n")
        f.write('{"step": 12, "torn')  # and a torn line after it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = _resume(out, tiny_hp, digits)
    _same_result(result, reference)


def _legacy(run_dir):
    """resume.pt as sparsetorch wrote it before it kept a copy of the metrics."""
    state = load_resume(resume_path(run_dir))
    state.pop("metrics", None)
    atomic_save(state, resume_path(run_dir))


def test_without_a_copy_a_corrupt_line_is_refused_and_the_file_kept(tmp_path, tiny_hp, digits):
    out, run_dir = _interrupted(tmp_path, tiny_hp, digits)
    _legacy(run_dir)
    lines = _lines(run_dir)
    lines[1] = "not json"
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    before = (run_dir / "metrics.jsonl").read_bytes()
    with pytest.raises(ValueError, match=r"metrics.jsonl' line 2 is not a JSON row"):
        _resume(out, tiny_hp, digits)
    assert (run_dir / "metrics.jsonl").read_bytes() == before  # nothing truncated


def test_without_a_copy_missing_rows_are_refused(tmp_path, tiny_hp, digits):
    out, run_dir = _interrupted(tmp_path, tiny_hp, digits)
    _legacy(run_dir)
    (run_dir / "metrics.jsonl").write_text(_lines(run_dir)[0] + "\n")
    with pytest.raises(ValueError, match=r"ends at step 0 .* at step 6"):
        _resume(out, tiny_hp, digits)


def test_without_a_copy_a_good_file_resumes(tmp_path, tiny_hp, digits, reference):
    out, run_dir = _interrupted(tmp_path, tiny_hp, digits)
    _legacy(run_dir)
    _same_result(_resume(out, tiny_hp, digits), reference)


def test_each_row_is_fsynced_before_the_checkpoint_that_counts_it(
    monkeypatch, tmp_path, tiny_hp, digits
):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        events.append(("fsync", name))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.path.basename(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    train(tiny_hp, tmp_path, dataset=digits)
    rows = [i for i, e in enumerate(events) if e == ("fsync", "metrics.jsonl")]
    resumes = [i for i, e in enumerate(events) if e == ("replace", "resume.pt")]
    assert len(rows) == len(resumes) == 5  # steps 0, 3, 6, 9, 12
    assert all(r < c for r, c in zip(rows, resumes))
    assert all(c < r for c, r in zip(resumes, rows[1:]))


def test_reading_a_finished_run_with_a_corrupt_metrics_file_is_an_error(tmp_path, tiny_hp, digits):
    run_dir = train(tiny_hp, tmp_path, dataset=digits).run_dir
    lines = _lines(run_dir)
    (run_dir / "metrics.jsonl").write_text("\n".join([lines[0], "{oops", *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match=r"metrics.jsonl' line 2 is not a JSON row"):
        load_run(run_dir)
    swapped = [lines[0], lines[2], lines[1], *lines[3:]]
    (run_dir / "metrics.jsonl").write_text("\n".join(swapped) + "\n")
    with pytest.raises(ValueError, match=r"steps out of order \(\[0, 6, 3, 9, 12\]\)"):
        RunDir(run_dir).read_metrics()
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n" + '{"step": 15, "tor')
    assert [r["step"] for r in RunDir(run_dir).read_metrics()] == [0, 3, 6, 9, 12]


def test_resume_state_keeps_the_rows(tmp_path, tiny_hp, digits):
    _, run_dir = _interrupted(tmp_path, tiny_hp, digits)
    state = load_resume(resume_path(run_dir))
    assert state["metrics"] == _lines(run_dir)
    assert torch.is_tensor(state["torch_rng"])


def test_run_dir_files_follow_the_umask(tmp_path, tiny_hp, digits):
    old = os.umask(0o022)
    try:
        run_dir = train(tiny_hp, tmp_path, dataset=digits).run_dir
    finally:
        os.umask(old)
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert len(files) >= 8
    modes = {p.relative_to(run_dir).as_posix(): p.stat().st_mode & 0o777 for p in files}
    assert modes == dict.fromkeys(modes, 0o644)
    assert not [p for p in run_dir.rglob(".*")]  # no lock or temp file left
