"""GMP/SET/RigL inside the runner: the hook steps through the algorithm's own ``step()`` (the
same run as a plain loop, bitwise), ``sparsetorch train --method ...`` logs every update and
resumes exactly."""

from __future__ import annotations

import json
import struct

import pytest
import torch

import sparsetorch as st
from sparsetorch.cli import main
from sparsetorch.data import load
from sparsetorch.experiments import Hparams, TrainContext, TrainHook, train
from sparsetorch.experiments.methods import method, method_names
from sparsetorch.experiments.result import NONDETERMINISTIC
from tests.algorithms.during.helpers import batch, make_optimizer, tiny_mlp, weights


@pytest.fixture(scope="module")
def digits():
    return load("digits")


def tiny_hp(method, **options):
    hp = Hparams()
    hp.dataset.name = "digits"
    hp.dataset.train_size = 256
    hp.dataset.val_size = hp.dataset.test_size = 64
    hp.training.batch_size = 32
    hp.training.steps = 16
    hp.training.eval_every = 4
    hp.sparsity.method = method
    hp.sparsity.sparsity = 0.9
    hp.sparsity.distribution = "erk"
    hp.sparsity.options = dict(options)
    return hp


class Interrupt(TrainHook):
    def __init__(self, at=None):
        self.at = at

    def after_step(self, ctx, step):
        if self.at is not None and step + 1 == self.at:
            raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (st.RigL, dict(delta_t=3)),
        (st.SET, dict(delta_t=3)),
        (st.GMP, dict(delta_t=3, distribution="erk")),
    ],
)
def test_hook_protocol_is_bitwise_the_same_as_step(cls, kwargs):
    direct_model, hooked_model = tiny_mlp(), tiny_mlp()
    seeded = {} if cls is st.GMP else {"seed": 0}
    direct = cls(
        direct_model, make_optimizer("adam", direct_model), total_steps=24, **seeded, **kwargs
    )
    opt = make_optimizer("adam", hooked_model)
    hook = method(cls.method)(cls.Config(**kwargs))
    assert hook.steps_optimizer
    ctx = TrainContext(
        model=hooked_model, optimizer=opt, data=None, total_steps=24, steps_per_epoch=24, seed=0
    )
    hook.on_train_start(ctx)
    for t in range(24):
        x, y = batch(t)
        for model, optimizer in ((direct_model, direct.optimizer), (hooked_model, opt)):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
        direct.step()
        hook.after_backward(ctx, t)
        hook.optimizer_step(ctx, t)
        hook.after_step(ctx, t)
    a, b = weights(direct), weights(hook.algo)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert all(torch.equal(direct.masks()[n], m) for n, m in hook.algo.masks().items())
    assert hook.algo.history == direct.history and direct.history
    assert ctx.logs[f"{direct.method}/step"] == direct.history[-1]["step"]
    with pytest.raises(RuntimeError, match="at step 24 but the runner at step 3"):
        hook.optimizer_step(ctx, 3)


def strip(rows):
    return [{k: v for k, v in r.items() if k not in NONDETERMINISTIC} for r in rows]


def test_train_rigl_logs_updates_writes_churn_and_resumes_exactly(tmp_path, digits):
    hp = tiny_hp("rigl", delta_t=2, alpha=0.5)
    reference = train(hp, tmp_path / "ref", dataset=digits)
    rows = reference.metrics
    # every evaluation row after an update carries the latest update's statistics
    assert [r.get("rigl/step") for r in rows] == [None, 2, 6, 10, None]  # T_end = 12
    assert all(0 < r["rigl/changed"] <= 0.5 for r in rows[1:4])
    assert all(r["sparsity"] == pytest.approx(0.9, abs=1e-3) for r in rows)
    lines = (reference.run_dir / "topology.jsonl").read_text().splitlines()
    history = [json.loads(line) for line in lines]
    assert [h["step"] for h in history] == [2, 4, 6, 8, 10]
    assert all(h["grown"] + (h["overlap_prev"] == 1) > 0 for h in history)
    assert not (reference.run_dir / "topology_churn.png").exists()  # with the other plots
    png = (reference.run_dir / "plots" / "topology_churn.png").read_bytes()
    width, height = struct.unpack(">II", png[16:24])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and width > 800 and height > 300
    assert (
        "![topology churn](plots/topology_churn.png)"
        in (reference.run_dir / "report.md").read_text()
    )

    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):  # dies after update 7: last checkpoint at step 4
        train(hp, out, hooks=[Interrupt(at=7)], dataset=digits)
    resumed = train(hp, out, hooks=[Interrupt()], dataset=digits)
    assert strip(resumed.metrics) == strip(reference.metrics)
    for key, value in reference.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    resumed_lines = (resumed.run_dir / "topology.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in resumed_lines] == history


def test_methods_are_registered_and_reject_unknown_options():
    assert {"gmp", "set", "rigl"} <= set(method_names())
    with pytest.raises(
        ValueError, match=r"method 'rigl' has no option\(s\) \['beta'\]; known: delta_t"
    ):
        tiny_hp("rigl", beta=1).sparsity.config()
    with pytest.raises(ValueError, match=r"method 'gmp' has no option\(s\) \['alpha'\]"):
        tiny_hp("gmp", alpha=0.3).sparsity.config()


def test_cli_train_gmp(tmp_path, capsys):
    code = main(
        [
            "train",
            "--dataset", "digits", "--train-size", "128", "--val-size", "32",
            "--test-size", "32", "--batch-size", "32", "--steps", "8", "--eval-every", "4",
            "--method", "gmp", "--sparsity", "0.8", "--distribution", "uniform",
            "--delta-t", "2", "--t-end", "6",
            "--out", str(tmp_path),
        ]
    )  # fmt: skip
    assert code == 0
    (run_dir,) = tmp_path.iterdir()
    history = [json.loads(x) for x in (run_dir / "topology.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [0, 2, 4, 6]
    assert history[-1]["target_sparsity"] == pytest.approx(0.8)
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["sparsity"] == pytest.approx(0.8, abs=1e-3)
