import json
from dataclasses import dataclass

import pytest
import torch

from sparsetorch._registry import Registry
from sparsetorch.algorithms.config import AlgorithmConfig, setting
from sparsetorch.experiments import (
    HPARAMS_VERSION,
    TrainHook,
    TrainingDiverged,
    build_model,
    load_run,
    train,
)
from sparsetorch.experiments.data_order import batch_indices, epoch_order
from sparsetorch.experiments.methods import Method, method_names
from sparsetorch.experiments.result import NONDETERMINISTIC
from sparsetorch.experiments.run_state import load_resume, resume_path


def strip(rows):
    return [{k: v for k, v in r.items() if k not in NONDETERMINISTIC} for r in rows]


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


class Interrupt(TrainHook):
    """Simulates a crash (Ctrl-C) right after update ``at``; None = never."""

    def __init__(self, at=None):
        self.at = at

    def after_step(self, ctx, step):
        if self.at is not None and step + 1 == self.at:
            raise KeyboardInterrupt


class Counter(TrainHook):
    """A hook with state: counts updates and logs the count."""

    def __init__(self):
        self.count = 0

    def after_step(self, ctx, step):
        self.count += 1
        ctx.logs["count"] = self.count

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state):
        self.count = state["count"]


class Recorder(TrainHook):
    def __init__(self):
        self.calls = []

    def on_train_start(self, ctx):
        self.calls.append(("start", None))

    def before_backward(self, ctx, step, loss):
        self.calls.append(("before_backward", step))

    def after_backward(self, ctx, step):
        grads = [p.grad for p in ctx.model.parameters()]
        assert all(g is not None for g in grads)
        self.calls.append(("after_backward", step))

    def after_step(self, ctx, step):
        self.calls.append(("after_step", step))

    def on_train_end(self, ctx):
        self.calls.append(("end", None))


def test_same_hparams_and_seed_give_bitwise_same_metrics_and_weights(tiny_hp, digits):
    a = train(tiny_hp, dataset=digits)
    b = train(tiny_hp, dataset=digits)
    assert len(a.metrics) == 5  # steps 0, 3, 6, 9, 12
    assert strip(a.metrics) == strip(b.metrics)
    assert_same_state(a.model.state_dict(), b.model.state_dict())
    tiny_hp.training.seed = 1
    c = train(tiny_hp, dataset=digits)
    assert strip(c.metrics) != strip(a.metrics)


def test_train_leaves_the_callers_rng_alone(tiny_hp, digits):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    train(tiny_hp, dataset=digits)
    assert torch.equal(before, torch.get_rng_state())


def test_data_seed_changes_the_order_not_the_init(tiny_hp, digits):
    a = train(tiny_hp, dataset=digits)
    tiny_hp.training.data_seed = 5
    b = train(tiny_hp, dataset=digits)
    assert_same_state(a.state_at(0), b.state_at(0))
    assert strip(a.metrics) != strip(b.metrics)


@pytest.mark.parametrize(
    ("model", "options", "optimizer", "batch", "train_size"),
    [("lenet300", {}, "adam", 52, 256), ("resnet8", {"width": 4}, "momentum", 16, 64)],
)
def test_resume_equals_uninterrupted_run(
    tmp_path, tiny_hp, digits, model, options, optimizer, batch, train_size
):
    # resnet: batch-norm running statistics and SGD momentum buffers must resume too
    tiny_hp.model.name = model
    tiny_hp.model.options = options
    tiny_hp.training.optimizer = optimizer
    tiny_hp.training.lr = 0.01
    tiny_hp.training.batch_size = batch
    tiny_hp.dataset.train_size = train_size
    tiny_hp.dataset.val_size = tiny_hp.dataset.test_size = 32
    reference = train(tiny_hp, tmp_path / "ref", hooks=[Interrupt(), Counter()], dataset=digits)

    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):  # dies after update 8: last checkpoint at step 6
        train(tiny_hp, out, hooks=[Interrupt(at=8), Counter()], dataset=digits)
    (run_dir,) = out.iterdir()
    assert load_resume(resume_path(run_dir))["step"] == 6
    assert not (run_dir / "result.json").exists()
    counter = Counter()
    resumed = train(tiny_hp, out, hooks=[Interrupt(), counter], dataset=digits)

    assert resumed.run_dir.name == reference.run_dir.name
    assert strip(resumed.metrics) == strip(reference.metrics)
    assert [r["count"] for r in resumed.metrics[1:]] == [3, 6, 9, 12]
    assert counter.count == 12  # state restored from the checkpoint, then 6 more updates
    assert_same_state(resumed.model.state_dict(), reference.model.state_dict())
    on_disk = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert strip(on_disk) == strip(reference.metrics)


def test_finished_run_is_reused_without_training(tmp_path, tiny_hp, digits):
    first = train(tiny_hp, tmp_path, dataset=digits)
    assert not first.reused
    recorder = Recorder()
    again = train(tiny_hp, tmp_path, hooks=[recorder], dataset=digits)
    # a hook is part of the identity: another run dir, trained
    assert again.run_dir != first.run_dir and recorder.calls
    second = train(tiny_hp, tmp_path)
    assert second.reused and second.run_dir == first.run_dir
    assert second.metrics == first.metrics  # wall time included: read back, not retrained
    assert_same_state(second.model.state_dict(), first.model.state_dict())
    loaded = load_run(first.run_dir)
    assert loaded.early_stop == first.early_stop and loaded.saved_steps == [0, 12]


def test_save_states_at_keeps_the_weights_of_those_steps(tmp_path, tiny_hp, digits):
    result = train(tiny_hp, tmp_path, save_states_at=(4, 12), dataset=digits)
    assert result.saved_steps == [0, 4, 12]
    tiny_hp.training.steps = 4
    short = train(tiny_hp, dataset=digits)  # in memory
    assert_same_state(result.state_at(4), short.model.state_dict())
    fresh = build_model(tiny_hp, digits.input_shape, digits.num_classes)
    assert_same_state(result.state_at(0), fresh.state_dict())
    with pytest.raises(ValueError, match=r"no weights saved at step 5; saved steps: \[0, 4, 12\]"):
        result.state_at(5)
    tiny_hp.training.steps = 12
    with pytest.raises(ValueError, match=r"kept no weights at step\(s\) \[7\]"):
        train(tiny_hp, tmp_path, save_states_at=(7,), dataset=digits)
    with pytest.raises(ValueError, match=r"save_states_at must be steps in \[0, 12\]"):
        train(tiny_hp, save_states_at=(13,), dataset=digits)


def magnitude_masks(state, density):
    masks = {}
    for name in ("fc1.weight", "fc2.weight", "fc3.weight"):
        w = state[name].abs().flatten()
        keep = torch.zeros_like(w, dtype=torch.bool)
        keep[torch.topk(w, int(density * w.numel())).indices] = True
        masks[name] = keep.view_as(state[name])
    return masks


def test_masks_and_init_state_rewind_like_imp(tmp_path, tiny_hp, digits):
    dense = train(tiny_hp, tmp_path, dataset=digits)
    masks = magnitude_masks(dense.model.state_dict(), 0.2)
    theta0 = dense.state_at(0)
    ticket = train(tiny_hp, tmp_path, init_state=theta0, masks=masks, dataset=digits)
    assert ticket.run_dir != dense.run_dir
    identity = json.loads((ticket.run_dir / "run.json").read_text())["identity"]
    assert {"inputs.init_state", "inputs.masks"} <= set(identity)
    init = ticket.state_at(0)
    for name, mask in masks.items():
        assert torch.equal(init[name], theta0[name] * mask)  # m * theta_0
        final = ticket.model.state_dict()[name]
        assert torch.count_nonzero(final[~mask]) == 0
        assert torch.equal(ticket.model.get_parameter(name) != 0, mask)
    expected = 1 - sum(int(m.sum()) for m in masks.values()) / sum(
        m.numel() for m in masks.values()
    )
    assert ticket.final["sparsity"] == pytest.approx(expected, abs=1e-12)
    again = train(tiny_hp, tmp_path, init_state=theta0, masks=masks, dataset=digits)
    assert again.reused
    assert torch.equal(again.model.fc1.weight_sparsity_mask, masks["fc1.weight"])


def test_a_given_model_is_trained_in_place(tiny_hp, digits):
    model = build_model(tiny_hp, digits.input_shape, digits.num_classes)
    result = train(tiny_hp, model=model, dataset=digits)
    assert result.model is model
    assert strip(result.metrics) == strip(train(tiny_hp, dataset=digits).metrics)


def test_hooks_are_called_in_order_and_logs_are_recorded(tiny_hp, digits):
    tiny_hp.training.steps = 3
    recorder, counter = Recorder(), Counter()
    result = train(tiny_hp, hooks=[recorder, counter], dataset=digits)
    per_step = [
        call
        for step in range(3)
        for call in (("before_backward", step), ("after_backward", step), ("after_step", step))
    ]
    assert recorder.calls == [("start", None), *per_step, ("end", None)]
    assert result.metrics[-1]["count"] == 3 and "count" not in result.metrics[0]


def test_context_and_sample_batch(tiny_hp, digits):
    seen = {}

    class Peek(TrainHook):
        def on_train_start(self, ctx):
            seen.update(vars(ctx))

    train(tiny_hp, hooks=[Peek()], dataset=digits)
    assert seen["total_steps"] == 12 and seen["steps_per_epoch"] == 5 and seen["run_dir"] is None
    assert len(seen["data"].train) == 256 and seen["hparams"].training.steps == 12
    first = batch_indices(epoch_order(256, 0, 0), 0, 52)
    assert torch.equal(seen["sample_batch"][0], seen["data"].train.x[first])
    assert torch.equal(seen["sample_batch"][1], seen["data"].train.y[first])


def test_before_backward_can_replace_the_loss(tiny_hp, digits):
    class ZeroLoss(TrainHook):
        def before_backward(self, ctx, step, loss):
            return loss * 0

    result = train(tiny_hp, hooks=[ZeroLoss()], dataset=digits, progress=False)
    tiny_hp.training.optimizer = "sgd"
    sgd = train(tiny_hp, hooks=[ZeroLoss()], dataset=digits)
    assert result.final["train_loss"] == 0.0
    assert_same_state(sgd.model.state_dict(), sgd.state_at(0))  # zero gradient: no change


def test_method_hooks_come_from_the_methods_registry(monkeypatch, tiny_hp, digits):
    @dataclass
    class ToyConfig(AlgorithmConfig):
        method = "toy"
        delta_t: int = setting(1, "steps between updates", low=1)

    configs, methods, built = Registry("method"), Registry("method"), []
    configs.register("toy")(ToyConfig)

    def hook(config):
        built.append(config.options())
        return Counter()

    methods.register("toy")(Method("toy", ToyConfig, hook))
    method_names()  # the real methods registered before the registries are swapped
    monkeypatch.setattr("sparsetorch.algorithms.config.CONFIGS", configs)
    monkeypatch.setattr("sparsetorch.experiments.methods.METHODS", methods)
    tiny_hp.sparsity.method, tiny_hp.sparsity.sparsity = "toy", 0.5
    tiny_hp.sparsity.options = {"delta_t": 2}
    result = train(tiny_hp, dataset=digits)
    assert built == [{"delta_t": 2}] and result.final["count"] == 12
    tiny_hp.sparsity.method = "nope"
    with pytest.raises(ValueError, match="unknown method 'nope'; known: dense, toy"):
        train(tiny_hp, dataset=digits)


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(tmp_path, tiny_hp, digits):
    class Poison(TrainHook):
        def before_backward(self, ctx, step, loss):
            return loss * float("nan") if step == 7 else None

    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 7 .*last good checkpoint"):
        train(tiny_hp, tmp_path, hooks=[Poison()], dataset=digits)
    (run_dir,) = tmp_path.iterdir()
    assert load_resume(resume_path(run_dir))["step"] == 6
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 3, 6]
    assert not (run_dir / "result.json").exists()
    with pytest.raises(TrainingDiverged, match="in-memory run: nothing saved"):
        train(tiny_hp, hooks=[Poison()], dataset=digits)


# ---- bad input: clear errors, nothing written ------------------------------------------------
@pytest.mark.parametrize(
    ("group", "name", "value", "message"),
    [
        ("model", "name", "vgg", "unknown model 'vgg'; known: conv2"),
        ("dataset", "name", "cifar", "unknown dataset 'cifar'; known: .*digits"),
        ("training", "optimizer", "lamb", "unknown optimizer 'lamb'; known: adam"),
        ("training", "lr_schedule", "linear", "unknown lr_schedule 'linear'; known: constant"),
    ],
)
def test_unknown_names_fail_before_anything_is_written(
    tmp_path, tiny_hp, group, name, value, message
):
    setattr(getattr(tiny_hp, group), name, value)
    with pytest.raises(ValueError, match=message):
        train(tiny_hp, tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_out_dir_that_is_a_file(tmp_path, tiny_hp):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"out dir .* is not a directory"):
        train(tiny_hp, tmp_path / "file")
    with pytest.raises(ValueError, match="is a file"):
        train(tiny_hp, tmp_path / "file" / "sub")


def test_run_dir_from_an_incompatible_hparams_version(tmp_path, tiny_hp, digits):
    result = train(tiny_hp, tmp_path, dataset=digits)
    hparams_file = result.run_dir / "hparams.json"
    data = json.loads(hparams_file.read_text())
    data["version"] = HPARAMS_VERSION + 1
    hparams_file.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=f"written with hparams version {HPARAMS_VERSION + 1}"):
        train(tiny_hp, tmp_path, dataset=digits)


def test_explicit_run_dir_holding_another_run(tmp_path, tiny_hp, digits):
    train(tiny_hp, run_dir=tmp_path / "level0", dataset=digits)
    tiny_hp.training.lr = 0.1
    with pytest.raises(ValueError, match=r"holds a different run \(differs in \['training.lr'\]\)"):
        train(tiny_hp, run_dir=tmp_path / "level0", dataset=digits)
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"not empty and has no hparams.json"):
        train(tiny_hp, run_dir=tmp_path / "stuff", dataset=digits)


def test_missing_and_corrupt_fashion_mnist(tmp_path, tiny_hp):
    tiny_hp.dataset.name = "fashion-mnist"
    tiny_hp.dataset.data_dir = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        train(tiny_hp, tmp_path / "runs")
    data = tmp_path / "fm"
    data.mkdir()
    for name in ("train-images", "t10k-images"):
        (data / f"{name}-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03garbage")
    for name in ("train-labels", "t10k-labels"):
        (data / f"{name}-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x01\x00")
    tiny_hp.dataset.data_dir = str(data)
    with pytest.raises(ValueError, match="train-images-idx3-ubyte: truncated IDX header"):
        train(tiny_hp, tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_dataset_mismatch_and_rejected_options(tiny_hp, digits):
    tiny_hp.dataset.name = "fashion-mnist"
    with pytest.raises(ValueError, match="'fashion-mnist' was asked for but 'digits' was loaded"):
        train(tiny_hp, dataset=digits)
    tiny_hp.dataset.name = "digits"
    tiny_hp.model.options = {"depth": 3}
    with pytest.raises(ValueError, match=r"model 'lenet300' rejects option\(s\) \{'depth': 3\}"):
        train(tiny_hp, dataset=digits)
    tiny_hp.model.options = {}
    tiny_hp.dataset.options = {"context": 3}
    with pytest.raises(ValueError, match=r"dataset 'digits' rejects option\(s\)"):
        train(tiny_hp)


def test_start_step_continues_exactly_like_the_full_run(tiny_hp, digits):
    # late rewinding: retrain theta_k from step k. With plain SGD (no optimizer state) the
    # continuation is bitwise the last part of the full run.
    tiny_hp.training.optimizer, tiny_hp.training.lr = "sgd", 0.05
    full = train(tiny_hp, save_states_at=(5,), dataset=digits)
    late = train(tiny_hp, init_state=full.state_at(5), start_step=5, dataset=digits)
    assert_same_state(late.model.state_dict(), full.model.state_dict())
    assert late.saved_steps == [5, 12] and late.metrics[0]["step"] == 5

    def no_train_loss(rows):
        return [{k: v for k, v in r.items() if k != "train_loss"} for r in strip(rows)]

    assert no_train_loss(late.metrics[1:]) == no_train_loss(full.metrics[2:])  # steps 6, 9, 12
    assert strip(late.metrics[2:]) == strip(full.metrics[3:])  # same training-loss windows
    with pytest.raises(ValueError, match=r"start_step must be an int in \[0, 12\), got 12"):
        train(tiny_hp, start_step=12, dataset=digits)


def test_resuming_with_another_thread_count_warns(tmp_path, tiny_hp, digits):
    with pytest.raises(KeyboardInterrupt):
        train(tiny_hp, run_dir=tmp_path / "run", hooks=[Interrupt(at=8)], dataset=digits)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["threads"] == torch.get_num_threads() == 1
    torch.set_num_threads(2)  # the fixture restores the count
    with pytest.warns(UserWarning, match="with 2 torch thread.*started with 1"):
        train(tiny_hp, run_dir=tmp_path / "run", hooks=[Interrupt()], dataset=digits)


def test_next_token_training_on_the_text_dataset(monkeypatch, tmp_path):
    # the runner trains (B, T) token sequences like images: a bigram model stands in for the
    # transformer here
    from sparsetorch.experiments import Hparams
    from sparsetorch.models import MODELS

    def bigram(input_shape, num_classes):
        return torch.nn.Sequential(
            torch.nn.Embedding(num_classes, 16), torch.nn.Linear(16, num_classes)
        )

    monkeypatch.setitem(MODELS._named, "bigram", bigram)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("def f(x):\n    return x + 1\n" * 200)
    hp = Hparams()
    hp.model.name, hp.dataset.name = "bigram", "text"
    hp.dataset.data_dir, hp.dataset.options = str(tmp_path / "src"), {"context": 16}
    hp.training.lr, hp.training.steps, hp.training.eval_every = 0.01, 40, 20
    result = train(hp, tmp_path / "runs")
    losses = [row["val_loss"] for row in result.metrics]
    assert losses[0] > 5.0 and losses[-1] < 0.5 * losses[0]  # ln 256 = 5.55 at the start
    assert result.final["test_acc"] > 0.5
    info = json.loads((result.run_dir / "run.json").read_text())
    assert info["dataset"]["input_shape"] == [16] and info["dataset"]["num_classes"] == 256


def test_a_crash_after_training_before_result_json_finishes_on_rerun(
    monkeypatch, tmp_path, tiny_hp, digits
):
    import sparsetorch.experiments.reporting as reporting

    def broken(run, result):
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(reporting, "write_run_report", broken)
        with pytest.raises(OSError, match="disk full"):
            train(tiny_hp, tmp_path, dataset=digits)
    (run_dir,) = tmp_path.iterdir()
    assert not (run_dir / "result.json").exists()
    done = train(tiny_hp, tmp_path, dataset=digits)  # resumes at the last step: no update
    reference = train(tiny_hp, dataset=digits)
    assert not done.reused and strip(done.metrics) == strip(reference.metrics)
    assert (run_dir / "result.json").exists() and (run_dir / "report.md").exists()
    assert_same_state(done.model.state_dict(), reference.model.state_dict())


def test_default_evaluation_draws_a_one_epoch_run_as_a_curve(tmp_path, digits):
    from sparsetorch.experiments.hparams import Hparams, default_eval_every

    hp = Hparams()
    hp.dataset.name = "digits"
    hp.dataset.train_size, hp.dataset.val_size, hp.dataset.test_size = 300, 50, 50
    hp.training.batch_size, hp.training.epochs = 10, 1  # 30 steps, one epoch
    result = train(hp, dataset=digits)
    assert [r["step"] for r in result.metrics] == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30]
    # long runs keep one evaluation per epoch; tiny ones evaluate every step
    assert default_eval_every(917 * 20, 917) == 917
    assert default_eval_every(917, 917) == 91
    assert default_eval_every(4, 2) == 1
