"""Files sparsetorch writes: permissions follow the umask (a replaced file keeps its own),
and temp files a killed writer left behind are removed by the next write that holds the lock."""

import multiprocessing
import os
import signal
import stat
from pathlib import Path

import pytest
import torch
from torch import nn

import sparsetorch as st
from sparsetorch._files import atomic_write, is_temp_of, locked, remove_stale_temps, temp_path
from sparsetorch.experiments.run_state import atomic_save
from sparsetorch.experiments.rundir import write_text_atomic


@pytest.fixture
def umask():
    """Set the process umask for one test (restored after)."""
    old = os.umask(0o022)
    os.umask(old)

    def set_to(value):
        os.umask(value)

    yield set_to
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


WRITERS = {
    "text": lambda p: write_text_atomic(p, "x\n"),
    "torch.save": lambda p: atomic_save({"a": torch.ones(2)}, p),
    "st.save": lambda p: st.save({"a": torch.ones(2)}, p),
}


@pytest.mark.parametrize("name", sorted(WRITERS))
@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_new_files_follow_the_umask(tmp_path, umask, name, mask):
    umask(mask)
    path = tmp_path / "f"
    WRITERS[name](path)
    assert _mode(path) == 0o666 & ~mask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_a_replaced_file_keeps_its_permissions(tmp_path, umask, name):
    umask(0o077)
    path = tmp_path / "f"
    path.write_text("old")
    path.chmod(0o644)
    WRITERS[name](path)
    assert _mode(path) == 0o644
    path.chmod(0o640)
    WRITERS[name](path)
    assert _mode(path) == 0o640


def test_temp_names_are_recognised():
    path = temp_path(Path("/x/model.safetensors"))
    assert is_temp_of(path.name, "model.safetensors")
    assert not is_temp_of(path.name, "model.safetensors.x")
    assert is_temp_of(".model.safetensors.ab_cd123.tmp", "model.safetensors")  # mkstemp's
    assert not is_temp_of(".model.safetensors.lock", "model.safetensors")


def _killed_while_saving(path):
    """Child: start st.save, die in the middle of writing the temp file."""
    import safetensors.torch

    real = safetensors.torch.save_file

    def dying(tensors, filename, metadata=None):
        real(tensors, filename, metadata=metadata)
        with open(filename, "r+b") as f:
            f.truncate(os.path.getsize(filename) // 2)  # half written
        os.kill(os.getpid(), signal.SIGKILL)

    import sparsetorch.checkpoint.writer as writer

    writer.save_file = dying
    st.save({"a": torch.arange(1000.0)}, path)


def test_a_save_killed_midway_leaves_the_old_file_and_the_next_save_cleans_up(tmp_path):
    path = tmp_path / "m.safetensors"
    st.save({"a": torch.zeros(1000)}, path)
    before = path.read_bytes()
    for _ in range(2):  # two kills (the second removes the first's temp file, then dies)
        child = multiprocessing.get_context("fork").Process(
            target=_killed_while_saving, args=(path,)
        )
        child.start()
        child.join(60)
        assert child.exitcode == -signal.SIGKILL
    assert path.read_bytes() == before  # the old file, untouched
    assert torch.equal(st.load(path)["a"], torch.zeros(1000))
    temps = [p for p in tmp_path.iterdir() if is_temp_of(p.name, path.name)]
    assert len(temps) == 1 and temps[0].stat().st_size < 4000  # a half-written temp file
    assert (tmp_path / ".m.safetensors.lock").exists()  # stale: the kernel dropped its lock
    st.save({"a": torch.ones(1000)}, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]
    assert torch.equal(st.load(path)["a"], torch.ones(1000))


def test_cleanup_spares_other_targets_and_other_files(tmp_path):
    keep = [".other.safetensors.123.0123abcd.tmp", "m.safetensors", "notes.tmp", ".m.lock"]
    for name in keep:
        (tmp_path / name).write_text("x")
    stale = tmp_path / ".m.safetensors.99.deadbeef.tmp"
    stale.write_text("x")
    assert remove_stale_temps(tmp_path, "m.safetensors") == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)


def test_atomic_write_failure_leaves_nothing(tmp_path):
    path = tmp_path / "f"

    def fail(tmp):
        tmp.write_text("partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, fail)
    assert list(tmp_path.iterdir()) == []


def test_locked_refuses_or_waits_and_removes_its_file(tmp_path):
    lock = tmp_path / ".lock"
    with locked(lock, wait=False, busy="held by {pid}"):
        assert lock.read_text().strip() == str(os.getpid())
        with (
            pytest.raises(ValueError, match=f"held by {os.getpid()}"),
            locked(lock, wait=False, busy="held by {pid}"),
        ):
            pass
    assert not lock.exists()
    with locked(lock, wait=True):  # free: no wait
        pass
    assert not lock.exists()


def test_a_model_on_disk_round_trips_after_cleanup(tmp_path):
    model = nn.Linear(4, 2)
    path = st.save(model, tmp_path / "m.safetensors")
    (tmp_path / ".m.safetensors.1.00000000.tmp").write_bytes(b"junk")
    st.save(model, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]
