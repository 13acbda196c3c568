"""training.precision: bf16/fp16 autocast in training and evaluation, the GradScaler of fp16
(hooks see unscaled gradients, a skipped step, its state resumed), and the checks."""

import pytest
import torch

from sparsetorch.cli import main
from sparsetorch.experiments import Hparams, TrainHook, train
from sparsetorch.experiments.result import NONDETERMINISTIC
from sparsetorch.experiments.run_state import load_resume, resume_path


def strip(rows):
    return [{k: v for k, v in r.items() if k not in NONDETERMINISTIC} for r in rows]


class Probe(TrainHook):
    """Records the forward's output dtype (training and evaluation), the gradients' largest
    magnitude after backward, the loss scale; can poison a gradient or interrupt the run."""

    def __init__(self, inf_at=None, stop_after=None):
        self.inf_at, self.stop_after = inf_at, stop_after
        self.dtypes, self.grad_max, self.scales, self.start_scale = set(), [], [], None
        self.handle = None

    def on_train_start(self, ctx):
        layer = next(m for m in ctx.model.modules() if isinstance(m, torch.nn.Linear))
        self.handle = layer.register_forward_hook(
            lambda m, i, out: self.dtypes.add((m.training, out.dtype))
        )
        self.start_scale = None if ctx.scaler is None else ctx.scaler.get_scale()

    def before_backward(self, ctx, step, loss):
        if step == self.inf_at:  # the backward pass overflows, as an fp16 gradient can
            weight = next(ctx.model.parameters())
            self.poison = weight.register_hook(lambda g: torch.full_like(g, float("inf")))

    def after_backward(self, ctx, step):
        params = [p for p in ctx.model.parameters() if p.grad is not None]
        self.grad_max.append(max(float(p.grad.abs().max()) for p in params))
        if step == self.inf_at:
            self.poison.remove()

    def after_step(self, ctx, step):
        if ctx.scaler is not None:
            self.scales.append(ctx.scaler.get_scale())
        if self.stop_after is not None and step + 1 == self.stop_after:
            raise KeyboardInterrupt

    def on_train_end(self, ctx):
        self.handle.remove()


@pytest.mark.parametrize(
    ("precision", "dtype"), [("bf16", torch.bfloat16), ("fp16", torch.float16)]
)
def test_training_and_evaluation_run_under_autocast(tiny_hp, digits, precision, dtype):
    reference = train(tiny_hp, dataset=digits, hooks=[Probe()])
    tiny_hp.training.precision = precision
    probe = Probe()
    result = train(tiny_hp, dataset=digits, hooks=[probe])
    assert probe.dtypes == {(True, dtype), (False, dtype)}
    assert result.model.fc1.weight.dtype == torch.float32  # master weights stay float32
    assert strip(result.metrics) != strip(reference.metrics)
    assert abs(result.final["val_loss"] - reference.final["val_loss"]) < 0.05


def test_fp16_hooks_see_the_unscaled_gradient(tiny_hp, digits):
    fp32 = Probe()
    train(tiny_hp, dataset=digits, hooks=[fp32])
    tiny_hp.training.precision = "fp16"
    fp16 = Probe()
    train(tiny_hp, dataset=digits, hooks=[fp16])
    assert fp16.scales[0] == 65536.0  # the loss was scaled ...
    for a, b in zip(fp16.grad_max, fp32.grad_max):
        assert 0.9 < a / b < 1.1  # ... and the gradient unscaled before the hooks


@pytest.mark.parametrize("method", ["dense", "rigl"])
def test_a_skipped_fp16_step_and_the_scalers_state_resume_exactly(
    tmp_path, tiny_hp, digits, method
):
    tiny_hp.training.precision = "fp16"
    if method == "rigl":
        tiny_hp.sparsity.method, tiny_hp.sparsity.sparsity = "rigl", 0.8
        tiny_hp.sparsity.options = {"delta_t": 2}
    probe = Probe(inf_at=2)
    reference = train(tiny_hp, tmp_path / "ref", dataset=digits, hooks=[probe])
    assert probe.scales[:4] == [65536.0, 65536.0, 32768.0, 32768.0]  # step 2 skipped
    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_hp, out, dataset=digits, hooks=[Probe(inf_at=2, stop_after=8)])
    (run_dir,) = out.iterdir()
    assert load_resume(resume_path(run_dir))["scaler"]["scale"] == 32768.0
    resumed_probe = Probe(inf_at=2)
    resumed = train(tiny_hp, out, dataset=digits, hooks=[resumed_probe])
    assert resumed_probe.start_scale == 32768.0  # the scaler came back with the checkpoint
    assert strip(resumed.metrics) == strip(reference.metrics)
    for key, value in reference.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key


def test_rigl_skips_its_update_with_a_skipped_fp16_step(tiny_hp, digits):
    import json

    tiny_hp.training.precision = "fp16"
    tiny_hp.sparsity.method, tiny_hp.sparsity.sparsity = "rigl", 0.8
    tiny_hp.sparsity.options = {"delta_t": 2}
    clean = train(tiny_hp, dataset=digits, hooks=[Probe()])
    poisoned = train(tiny_hp, dataset=digits, hooks=[Probe(inf_at=4)])
    updates = [r["rigl/step"] for r in clean.metrics if "rigl/step" in r]
    skipped = [r["rigl/step"] for r in poisoned.metrics if "rigl/step" in r]
    assert 4 in updates and 4 not in skipped, json.dumps([updates, skipped])


def test_precision_is_checked(tiny_hp, capsys):
    tiny_hp.training.precision = "fp8"
    with pytest.raises(ValueError, match=r"training\.precision must be fp32 or bf16 or fp16"):
        train(tiny_hp)
    tiny_hp.training.precision = "FP16"
    with pytest.raises(ValueError, match=r"fp16 .* not supported with distributed"):
        train(tiny_hp, distributed="ddp")
    assert main(["train", "--precision", "bf16", "--dry-run"]) == 0
    assert '"precision": "bf16"' in capsys.readouterr().out
    hp = Hparams()
    assert "training.precision" not in hp.identity()
    hp.training.precision = "bf16"
    assert hp.identity()["training.precision"] == "bf16"
