"""One process at a time writes a run dir or a lottery dir: a second ``train`` (or ``IMP``) on
the same directory is refused with a message naming the holder, and then, once the first has
finished, reuses its result. Two real processes (forked), each wait bounded in time."""

import json
import multiprocessing
import os

import pytest

from sparsetorch._files import InUse
from sparsetorch.cli import main
from sparsetorch.experiments import train
from sparsetorch.experiments.hparams import run_name
from sparsetorch.experiments.rundir import RunDir
from sparsetorch.lottery import IMP, IMPConfig

FORK = multiprocessing.get_context("fork")
TIMEOUT = 60  # seconds any one wait may take (a loaded CI machine); normally well under 1


def _paused_train(hp, out, dataset, started, resume):
    """Child: train, but hold still at the second evaluation until ``resume`` is set."""
    import sparsetorch.experiments.loop as loop

    real, calls = loop.evaluate, []

    def evaluate(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # step 3's val evaluation: step 0 is on disk
            started.set()
            assert resume.wait(TIMEOUT)
        return real(*args, **kwargs)

    loop.evaluate = evaluate
    train(hp, out, dataset=dataset)


def _start(target, *args):
    started, resume = FORK.Event(), FORK.Event()
    child = FORK.Process(target=target, args=(*args, started, resume))
    child.start()
    assert started.wait(TIMEOUT), "the first process did not start"
    return child, resume


def _finish(child, resume):
    resume.set()
    child.join(TIMEOUT)
    assert child.exitcode == 0


def test_a_second_train_on_the_same_run_is_refused_then_reuses(tmp_path, tiny_hp, digits):
    child, resume = _start(_paused_train, tiny_hp, tmp_path, digits)
    try:
        with pytest.raises(InUse, match=rf"in use by another process \(pid {child.pid}\)"):
            train(tiny_hp, tmp_path, dataset=digits)
    finally:
        _finish(child, resume)
    result = train(tiny_hp, tmp_path, dataset=digits)
    assert result.reused
    steps = [json.loads(line)["step"] for line in result.run_dir.joinpath("metrics.jsonl").open()]
    assert steps == [0, 3, 6, 9, 12]
    assert sorted(p.name for p in result.run_dir.iterdir() if p.name.startswith(".")) == []


def test_another_run_in_the_same_out_dir_is_not_blocked(tmp_path, tiny_hp, digits):
    child, resume = _start(_paused_train, tiny_hp, tmp_path, digits)
    try:
        tiny_hp.training.seed = 1
        other = train(tiny_hp, tmp_path, dataset=digits)
        assert not other.reused and other.run_dir.joinpath("result.json").is_file()
    finally:
        _finish(child, resume)


def test_the_cli_refuses_in_one_line(tmp_path, tiny_hp, capsys):
    """The lock is taken through another open file (as another process would): the CLI run
    in this process is refused like a second process."""
    tiny_hp.dataset.train_size = 64
    run_dir = tmp_path / run_name(tiny_hp, tiny_hp.identity())
    argv = ["train", "--dataset", "digits", "--train-size", "64", "--val-size", "100",
            "--test-size", "100", "--batch-size", "52", "--steps", "12", "--eval-every", "3",
            "--out", str(tmp_path)]  # fmt: skip
    with RunDir(run_dir).lock():
        assert main(argv) == 2
    err = capsys.readouterr().err
    # one error line, the last (the lines before are train's progress lines: what it loads)
    (error,) = [line for line in err.splitlines() if "error:" in line]
    assert err.splitlines()[-1] == error and error.startswith("sparsetorch train: error: ")
    assert f"run dir {str(run_dir)!r} is in use by another process (pid {os.getpid()})" in err
    assert not run_dir.exists()  # made for the lock, removed with it: nothing was written


def _paused_lottery(hp, out, dataset, started, resume):
    """Child: a lottery run that holds still when round 1 starts training."""
    import sparsetorch.lottery.imp as imp

    real = imp.train

    def train_round(hparams, **kwargs):
        if kwargs["run_dir"].name == "round01":
            started.set()
            assert resume.wait(TIMEOUT)
        return real(hparams, **kwargs)

    imp.train = train_round
    IMP(hp, IMPConfig(rounds=1), out_dir=out, dataset=dataset).run()


def test_a_second_lottery_on_the_same_dir_is_refused_then_reuses(tmp_path, tiny_hp, digits):
    child, resume = _start(_paused_lottery, tiny_hp, tmp_path, digits)
    try:
        with pytest.raises(InUse, match=rf"lottery run .* in use by another process \(pid "
                           rf"{child.pid}\)"):  # fmt: skip
            IMP(tiny_hp, IMPConfig(rounds=1), out_dir=tmp_path, dataset=digits).run()
    finally:
        _finish(child, resume)
    logs = []
    IMP(tiny_hp, IMPConfig(rounds=1), out_dir=tmp_path, dataset=digits, log=logs.append).run()
    assert len(logs) == 2 and all("[reused]" in line for line in logs)


def _paused_save(path, started, resume):
    """Child: st.save that holds still after writing its temp file."""
    import torch

    import sparsetorch as st
    import sparsetorch.checkpoint.writer as writer

    real = writer.save_file

    def save_file(tensors, filename, metadata=None):
        real(tensors, filename, metadata=metadata)
        started.set()
        assert resume.wait(TIMEOUT)

    writer.save_file = save_file
    st.save({"a": torch.zeros(8)}, path)


def test_a_second_save_to_the_same_file_waits_for_the_first(tmp_path):
    import threading

    import torch

    import sparsetorch as st

    path = tmp_path / "m.safetensors"
    child, resume = _start(_paused_save, path)
    done = threading.Event()
    waiter = threading.Thread(
        target=lambda: (st.save({"a": torch.ones(8)}, path), done.set()), daemon=True
    )
    waiter.start()
    try:
        assert not done.wait(0.5)  # blocked on the first save's lock
    finally:
        _finish(child, resume)
    assert done.wait(TIMEOUT)
    assert torch.equal(st.load(path)["a"], torch.ones(8))  # the last writer wins, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_a_run_killed_while_writing_its_first_file_starts_again(tmp_path, tiny_hp, digits):
    """Killed in the middle of writing hparams.json: the dir holds a stale lock file and a
    temp file, no hparams.json. That is still this run's dir, not someone else's."""
    run_dir = tmp_path / run_name(tiny_hp, tiny_hp.identity())
    run_dir.mkdir()
    (run_dir / ".sparsetorch.lock").write_text("12345\n")
    (run_dir / ".hparams.json.12345.0badc0de.tmp").write_text('{"vers')
    result = train(tiny_hp, tmp_path, dataset=digits)
    assert result.run_dir == run_dir and (run_dir / "result.json").is_file()
    assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".")) == []
