"""``sparsetorch train --distributed`` and ``train(..., distributed=...)``: what fails before
any process group exists, the flags, the batch split (no ranks needed), and (slow) a real
``torchrun`` launch of two CPU ranks."""

from __future__ import annotations

import itertools
import json

import pytest

from sparsetorch.cli import main
from sparsetorch.distributed.launch import ENVIRONMENT
from sparsetorch.experiments import Hparams, train
from sparsetorch.experiments.distributed import Parallel
from tests.distributed.torchrun import torchrun

TINY = ["--dataset", "digits", "--train-size", "128", "--val-size", "50", "--test-size", "50",
        "--batch-size", "32", "--steps", "6", "--eval-every", "3"]  # fmt: skip


@pytest.fixture
def no_torchrun(monkeypatch):
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


def test_train_distributed_needs_a_process_group():
    with pytest.raises(RuntimeError, match=r"needs an initialised process group.*torchrun"):
        train(Hparams(), distributed="ddp")


def test_train_distributed_mode_is_checked():
    with pytest.raises(ValueError, match="distributed must be one of ddp, fsdp, got 'zero'"):
        train(Hparams(), distributed="zero")


def test_cli_distributed_outside_torchrun_is_a_clear_error(capsys, no_torchrun, tmp_path):
    assert main(["train", *TINY, "--out", str(tmp_path), "--distributed", "ddp"]) == 2
    err = capsys.readouterr().err
    assert "--distributed needs the environment torchrun sets (RANK, WORLD_SIZE" in err
    assert not any(tmp_path.iterdir())  # nothing written


def test_cli_dist_timeout_only_with_distributed(capsys, tmp_path):
    assert main(["train", *TINY, "--out", str(tmp_path), "--dist-timeout", "5"]) == 2
    assert "--dist-timeout is only used with --distributed" in capsys.readouterr().err


def test_cli_dist_timeout_must_be_positive(capsys, monkeypatch, tmp_path):
    for name in ENVIRONMENT:
        monkeypatch.setenv(name, "0")
    argv = ["train", *TINY, "--out", str(tmp_path), "--distributed", "fsdp"]
    assert main([*argv, "--dist-timeout", "0"]) == 2
    assert "--dist-timeout must be a number of seconds > 0, got 0.0" in capsys.readouterr().err


def test_cli_help_shows_the_distributed_flags(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "--distributed {ddp,fsdp}" in text and "--dist-timeout S" in text


def ranks(world: int, rank: int = 0) -> Parallel:
    parallel = Parallel.__new__(Parallel)  # the arithmetic only: no process group
    parallel.rank, parallel.world_size = rank, world
    return parallel


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [4, 5, 7, 32, 33])
def test_shares_cover_the_batch_and_scales_give_the_global_mean(world, n):
    shares = [ranks(world, r).share(n) for r in range(world)]
    assert shares[0][0] == 0 and shares[-1][1] == n
    assert all(a[1] == b[0] for a, b in itertools.pairwise(shares))
    sizes = [stop - start for start, stop in shares]
    assert max(sizes) - min(sizes) <= 1
    # sum over ranks of scale_r * mean_r / world = sum of losses / n when mean_r = sum_r / size_r
    scales = [ranks(world, r).loss_scale(n) for r in range(world)]
    assert scales == [size * world / n for size in sizes]


def test_every_batch_needs_an_example_per_rank():
    ranks(2).check_batches(n_train=66, batch=32)  # the last batch has 2 examples
    with pytest.raises(ValueError, match=r"a batch of 2 example.*over 3 ranks"):
        ranks(3).check_batches(n_train=66, batch=32)
    with pytest.raises(ValueError, match="a batch of 2 example"):
        ranks(3).check_batches(n_train=64, batch=2)


@pytest.mark.slow
def test_torchrun_two_cpu_ranks_train_like_one_process(tmp_path):
    """The real launcher: two gloo ranks via torchrun, then the same command in one process:
    same run dir (the distributed mode is not part of a run's identity), same metrics."""
    argv = ["train", *TINY, "--method", "rigl", "--sparsity", "0.9", "--delta-t", "2",
            "--threads", "1"]  # fmt: skip
    args = ["-m", "sparsetorch", *argv, "--out", str(tmp_path / "ddp"), "--distributed", "ddp"]
    done = torchrun(args, tmp_path, complete=lambda stdout: stdout.count("test acc") == 2)
    assert done.stdout.count("test acc") == 2  # one summary (it names test acc twice)
    assert main([*argv, "--out", str(tmp_path / "one")]) == 0
    (two,) = (tmp_path / "ddp").iterdir()
    (one,) = (tmp_path / "one").iterdir()
    assert two.name == one.name
    rows = [
        [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()] for d in (two, one)
    ]
    for a, b in zip(*rows):
        assert a["step"] == b["step"] and a["sparsity"] == b["sparsity"]
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
