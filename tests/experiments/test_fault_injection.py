"""Fault injection: ``train``, a lottery run and ``st.save`` are killed with SIGKILL at seeded
random points, then run again until they finish. The points are file operations (before a
rename, before an fsync, halfway through a metrics row): where a crash can tear a file. The
finished result must be bitwise the uninterrupted one, and nothing may be left half-written:
no temp or lock file, every JSON file and metrics row parses, every checkpoint loads.

Each run is a forked child of this process (torch is already imported: a kill costs
milliseconds, not an interpreter start). The runs write to a tmpfs where there is one (a
killed process loses no page cache, so fsync adds nothing here but time; the order of the
fsyncs is tested in test_durable_metrics.py), and PNG rendering is stubbed (the writes stay,
the drawing goes): the whole file takes a few seconds."""

import contextlib
import json
import multiprocessing
import os
import random
import shutil
import signal
import tempfile
from pathlib import Path

import pytest
import torch

import sparsetorch as st
from sparsetorch.experiments import train
from sparsetorch.experiments.result import NONDETERMINISTIC
from sparsetorch.experiments.run_state import load_resume, resume_path
from sparsetorch.experiments.rundir import RunDir
from sparsetorch.lottery import IMP, IMPConfig

FORK = multiprocessing.get_context("fork")
TIMEOUT = 120  # seconds a child may take (a loaded CI machine); normally about one


@contextlib.contextmanager
def _file_operations(kill_at):
    """Count the file operations (before a rename, before an fsync, a metrics row) and die
    by SIGKILL at the ``kill_at``-th (0: never); yields the count so far."""
    seen = [0]

    def due():
        seen[0] += 1
        return seen[0] == kill_at

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def before(fn):
        def wrapped(*args, **kwargs):
            if due():
                die()
            return fn(*args, **kwargs)

        return wrapped

    append = RunDir.append_metrics

    def torn_append(self, row):
        if due():  # half a row reaches the disk, then the process dies
            line = json.dumps(row)
            with self.metrics_file.open("a") as f:
                f.write(line[: len(line) // 2])
            die()
        return append(self, row)

    real = os.replace, os.fsync
    os.replace, os.fsync = before(os.replace), before(os.fsync)
    RunDir.append_metrics = torn_append
    try:
        yield seen
    finally:
        os.replace, os.fsync = real
        RunDir.append_metrics = append


def _child(work, kill_at):
    with _file_operations(kill_at):
        work()


def _run(work, kill_at):
    """``work()`` in a forked child killed at its ``kill_at``-th file operation; whether it
    finished."""
    child = FORK.Process(target=_child, args=(work, kill_at))
    child.start()
    child.join(TIMEOUT)
    assert child.exitcode in (0, -signal.SIGKILL), child.exitcode
    return child.exitcode == 0


def _reference(work):
    """One whole run in this process: the reference, and the count of its file operations
    (the range kill points are drawn from). It also warms this process up (imports, first
    calls), so that the forked children start warm."""
    with _file_operations(0) as seen:
        work()
    TOTAL_OPS[work.__name__] = seen[0]
    assert seen[0] > 10


TOTAL_OPS: dict[str, int] = {}


def _until_done(work, seed, kills):
    """Run ``work`` again and again, each time killed at a seeded random file operation
    among those still ahead (about: a resumed run does what is left, give or take a few),
    until it finishes (at most ``kills`` kills, then once without). Returns the points
    where it was killed."""
    rng = random.Random(seed)
    killed, ahead = [], TOTAL_OPS[work.__name__]
    for _ in range(kills):
        point = rng.randint(1, max(ahead - 3, 1))
        if _run(work, point):
            return killed
        killed.append(point)
        ahead -= point
    assert _run(work, 0)
    return killed


@pytest.fixture
def work_dir(tmp_path, monkeypatch):
    """A fresh directory on a tmpfs (else tmp_path), and PNGs written without rendering."""
    from matplotlib.figure import Figure

    def savefig(self, fname, **kwargs):
        return fname.write(PNG) if hasattr(fname, "write") else Path(fname).write_bytes(PNG)

    monkeypatch.setattr(Figure, "savefig", savefig)
    if not Path("/dev/shm").is_dir():
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="sparsetorch-faults-", dir="/dev/shm"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


PNG = b"\x89PNG\r\n\x1a\n"  # the signature: plots are files here, not pictures


def strip(rows):
    return [{k: v for k, v in r.items() if k not in NONDETERMINISTIC} for r in rows]


def _nothing_half_written(root):
    hidden = sorted(str(p.relative_to(root)) for p in root.rglob(".*"))
    assert hidden == [], f"temp or lock files left: {hidden}"
    for path in root.rglob("*"):
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".jsonl":
            text = path.read_text()
            assert text.endswith("\n") or not text
            [json.loads(line) for line in text.splitlines()]
        elif path.suffix == ".safetensors":
            st.load(path)
        elif path.name == "resume.pt" or path.suffix == ".pt":
            torch.load(path, weights_only=True)


def _tensors_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _same_run(run_dir, ref_dir):
    """Bitwise the same run: metrics rows, result.json, every saved model state."""
    rows, ref = RunDir(run_dir).read_metrics(), RunDir(ref_dir).read_metrics()
    assert strip(rows) == strip(ref)
    result, want = RunDir(run_dir).read_result(), RunDir(ref_dir).read_result()
    for key in ("final", "early_stop"):
        assert strip([result[key]]) == strip([want[key]])
    assert {k: v for k, v in result.items() if k not in ("final", "early_stop", "wall_s")} == {
        k: v for k, v in want.items() if k not in ("final", "early_stop", "wall_s")
    }
    for rel in result["states"].values():
        _tensors_equal(st.load(run_dir / rel), st.load(ref_dir / rel))
    _tensors_equal(
        load_resume(resume_path(run_dir))["model"], load_resume(resume_path(ref_dir))["model"]
    )


def test_train_killed_at_random_file_operations_resumes_bitwise(work_dir, tiny_hp, digits):
    tmp_path = work_dir
    tiny_hp.sparsity.method = "rigl"  # hook state and mask updates must resume too
    tiny_hp.sparsity.sparsity = 0.8
    tiny_hp.sparsity.options = {"delta_t": 2}
    tiny_hp.training.steps = 9
    out = tmp_path / "run"

    def work_train():
        train(tiny_hp, out, dataset=digits)

    _reference(work_train)
    (reference,) = out.iterdir()
    reference = reference.rename(tmp_path / reference.name)
    assert len(_until_done(work_train, seed=0, kills=4)) >= 3
    _same_run(out / reference.name, reference)
    _nothing_half_written(out)


def test_lottery_killed_at_random_file_operations_resumes_bitwise(work_dir, tiny_hp, digits):
    tmp_path = work_dir
    lottery = IMPConfig(rounds=1)
    tiny_hp.training.steps = 6
    out = tmp_path / "run"

    def work_lottery():
        IMP(tiny_hp, lottery, out_dir=out, dataset=digits).run()

    _reference(work_lottery)
    (ref_dir,) = out.iterdir()
    ref_dir = ref_dir.rename(tmp_path / ref_dir.name)
    assert len(_until_done(work_lottery, seed=3, kills=4)) >= 3
    run_dir = out / ref_dir.name
    rounds = sorted(p.parent.relative_to(ref_dir) for p in ref_dir.rglob("result.json"))
    assert len(rounds) == 2  # seed0/round00, seed0/round01
    for rel in rounds:
        _same_run(run_dir / rel, ref_dir / rel)
    for masks in ref_dir.rglob("masks/*.pt"):
        _tensors_equal(
            torch.load(masks, weights_only=True),
            torch.load(run_dir / masks.relative_to(ref_dir), weights_only=True),
        )
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary == json.loads((ref_dir / "summary.json").read_text())
    _nothing_half_written(out)


def test_save_killed_at_random_file_operations_keeps_a_whole_file(work_dir):
    tmp_path = work_dir
    path = tmp_path / "m.safetensors"
    states = [{"w": torch.full((64, 64), float(i)) * (torch.rand(64, 64) < 0.3)} for i in range(6)]
    st.save(states[0], path)

    def work_save():
        st.save(states[work_save.i], path)

    rng = random.Random(5)
    for i in range(1, 6):
        work_save.i = i
        killed = not _run(work_save, rng.randint(1, 3))  # a save has 3 file operations
        loaded = st.load(path)
        assert any(torch.equal(loaded["w"], s["w"]) for s in states[: i + 1])  # old or new
        if killed:
            assert _run(work_save, 0)
        _tensors_equal(st.load(path), states[i])
        assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]
