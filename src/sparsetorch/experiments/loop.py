"""The training loop: batches in a seeded order, hooks at fixed points, evaluation on the
validation and test splits every ``eval_every`` steps, a resume checkpoint at each evaluation.

One step (``step`` counts optimizer updates from 0)::

    lr <- lr_at(step)
    loss = cross_entropy(model(x), y);  loss = hook.before_backward(...) (if not None)
    stop if loss is not finite (the last good checkpoint is kept)
    loss.backward();  hook.after_backward(ctx, step)
    optimizer.step() (or the stepping hook's optimizer_step);  hook.after_step(ctx, step)
    step += 1;  save the model if step in save_states_at;  evaluate + checkpoint on schedule

The run dir's files are written only once every hook's ``on_train_start`` has run (a method
that refuses the run there, e.g. SNIP finding a layer collapse on the data, leaves no files);
the initial weights wait in memory until then. Each evaluation appends its metrics row
(fsynced), then writes the resume checkpoint, which keeps a copy of every row so far.

Under ``training.precision`` bf16/fp16 the forward pass and evaluation run under autocast;
fp16 scales the loss, unscales the gradients before ``after_backward`` and steps through the
GradScaler (``experiments/precision.py``).

Everything that decides the numbers (data order, learning rate, RNG) is a function of the
hparams and the step, so the same hparams and seed give bitwise the same metrics on CPU, and
a run resumed from its checkpoint continues exactly as if it had never stopped.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsetorch.data import Dataset
from sparsetorch.experiments import run_state
from sparsetorch.experiments.data_order import batch_indices, epoch_order
from sparsetorch.experiments.evaluate import evaluate, loss_fn
from sparsetorch.experiments.hooks import TrainContext, TrainHook
from sparsetorch.experiments.layers import global_sparsity
from sparsetorch.experiments.optim import lr_at
from sparsetorch.experiments.precision import Precision
from sparsetorch.experiments.progress import progress_bar
from sparsetorch.experiments.rundir import RunDir, metrics_line


class TrainingDiverged(ValueError):
    """The training loss became NaN or infinite."""


@dataclass
class LoopOutput:
    metrics: list[dict[str, Any]]
    states: dict[int, Any]  # step -> Path (run dir) or state dict (in memory)
    wall_s: float


@dataclass
class Loop:
    """Everything :func:`fit` needs, resolved by the runner."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    data: Dataset
    hparams: Any  # Hparams
    hooks: Sequence[TrainHook]
    total_steps: int
    steps_per_epoch: int
    eval_every: int
    device: torch.device
    run: RunDir | None = None
    save_states_at: frozenset[int] = frozenset()
    progress: bool = False
    start_step: int = 0  # first update (late rewinding starts at the rewind step)
    log_fn: Callable[[dict[str, Any]], None] | None = None  # e.g. TensorBoard
    # DDP / FSDP2 (sparsetorch.experiments.distributed.Parallel); None: one process. Ranks other
    # than 0 run with run=None: they write nothing, but take part in every collective.
    parallel: Any = None
    # writes the run dir's own files (hparams.json, run.json, ...) when the run begins
    begin_run: Callable[[], None] | None = None
    _begun: bool = False
    _lines: list[str] = field(default_factory=list)  # metrics.jsonl so far
    precision: Precision | None = None  # None: fp32
    _states: dict[int, Any] = field(default_factory=dict)
    _order: tuple[int, torch.Tensor | None] = (-1, None)  # (epoch, its example order)

    @property
    def amp(self) -> Precision:
        if self.precision is None:
            self.precision = Precision("fp32", self.device)
        return self.precision

    @property
    def data_seed(self) -> int:
        t = self.hparams.training
        return t.seed if t.data_seed is None else t.data_seed

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, position = divmod(step, self.steps_per_epoch)
        if self._order[0] != epoch:
            self._order = (epoch, epoch_order(len(self.data.train), self.data_seed, epoch))
        idx = batch_indices(self._order[1], position, self.hparams.training.batch_size)
        return self.data.train.x[idx].to(self.device), self.data.train.y[idx].to(self.device)

    def save_state(self, step: int) -> None:
        """Keep the model's weights at ``step``: written to the run dir, or held in memory
        (an in-memory run, or a run dir not begun yet)."""
        writes = self.run is not None and self._begun
        if self.parallel is not None:  # gathered to rank 0 (a collective for FSDP)
            path = run_state.model_state_path(self.run.path, step) if writes else None
            state = self.parallel.save_model_state(self.model, path)
            if state is not None:
                self._states[step] = state
        elif not writes:
            self._states[step] = {
                k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()
            }
        else:
            path = run_state.model_state_path(self.run.path, step)
            self._states[step] = run_state.save_model_state(self.model, path)

    def begin(self) -> None:
        """Write the run dir's files, then the weights kept in memory until now."""
        if self._begun:
            return
        self._begun = True
        if self.run is None:
            return
        if self.begin_run is not None:
            self.begin_run()
        for step, state in sorted(self._states.items()):
            if isinstance(state, dict):
                path = run_state.model_state_path(self.run.path, step)
                self._states[step] = run_state.save_state_dict(state, path)

    def eval_row(self, step: int, train_loss: float | None, wall_s: float, logs: dict) -> dict:
        with self.amp.autocast():
            val = evaluate(self.model, self.data.val, self.device)
            test = evaluate(self.model, self.data.test, self.device)
        row = {
            "step": step,
            "epoch": round(step / self.steps_per_epoch, 6),
            "lr": lr_at(self.hparams.training, max(step - 1, 0), self.total_steps),
            "train_loss": train_loss,
            "val_loss": val["loss"],
            "val_acc": val["acc"],
            "test_loss": test["loss"],
            "test_acc": test["acc"],
            "sparsity": global_sparsity(self.model),
            "wall_s": round(wall_s, 3),
        }
        for key, value in logs.items():
            row.setdefault(key, value.item() if isinstance(value, torch.Tensor) else value)
        logs.clear()
        return row


def fit(loop: Loop, resume: dict[str, Any] | None = None) -> LoopOutput:
    """Run (or continue, given a resume checkpoint) the loop to ``total_steps``."""
    model, optimizer, run = loop.model, loop.optimizer, loop.run
    hp = loop.hparams
    ctx = TrainContext(
        model=model,
        optimizer=optimizer,
        data=loop.data,
        total_steps=loop.total_steps,
        steps_per_epoch=loop.steps_per_epoch,
        seed=hp.training.seed,
        device=loop.device,
        hparams=hp,
        sample_batch=loop.batch(0),
        run_dir=run.path if run else None,
        scaler=loop.amp.scaler,
    )
    step, wall_offset, metrics = loop.start_step, 0.0, []
    if resume is not None:
        if loop.parallel is not None:
            loop.parallel.restore_resume(resume, model, optimizer)
        else:
            run_state.restore_resume(resume, model, optimizer)
        loop.amp.load_state_dict(resume.get("scaler"))
        _load_hook_states(loop.hooks, resume["hooks"])
        step, wall_offset = resume["step"], resume["wall_s"]
        known = resume.get("metrics")  # None: written by an older sparsetorch
        if run is not None:
            metrics = run.resume_metrics(step, known)
            loop._lines = [metrics_line(row) for row in metrics]
        else:
            metrics = [json.loads(line) for line in known or ()]
        loop._states.update(_saved_states(run))
    else:
        loop.save_state(loop.start_step)
    start = time.perf_counter()

    def wall() -> float:
        return wall_offset + time.perf_counter() - start

    for hook in loop.hooks:
        hook.on_train_start(ctx)
    loop.begin()  # every hook accepted the run: its files now
    if resume is None:  # (a resume checkpoint comes after its step's row)
        metrics.append(_record(loop, ctx, step, None, wall()))

    stepper = _stepping_hook(loop.hooks)
    model.train()
    forward = model if loop.parallel is None else loop.parallel.forward_model
    loss_sum, loss_count = 0.0, 0
    bar = progress_bar(loop.total_steps, step, f"train {hp.model.name}", loop.progress)
    try:
        while step < loop.total_steps:
            x, y = loop.batch(step)
            if loop.parallel is not None:  # this rank's share of the global batch
                x, y = loop.parallel.local_batch(x, y)
            lr = lr_at(hp.training, step, loop.total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            with loop.amp.autocast():
                loss = loss_fn(forward(x), y)
            for hook in loop.hooks:
                replaced = hook.before_backward(ctx, step, loss)
                loss = loss if replaced is None else replaced
            value = loss.item()
            if not math.isfinite(value):
                raise TrainingDiverged(_diverged_message(loop, step, value))
            loop.amp.backward(loss, optimizer)
            for hook in loop.hooks:
                hook.after_backward(ctx, step)
            if stepper is None:
                loop.amp.step(optimizer)
            else:
                stepper.optimizer_step(ctx, step)
            for hook in loop.hooks:
                hook.after_step(ctx, step)
            step += 1
            loss_sum, loss_count = loss_sum + value, loss_count + 1
            bar.update(1)
            if step in loop.save_states_at and step != loop.total_steps:
                loop.save_state(step)
            if step % loop.eval_every == 0 or step == loop.total_steps:
                row = _record(loop, ctx, step, loss_sum / loss_count, wall())
                metrics.append(row)
                loss_sum, loss_count = 0.0, 0
                bar.set_postfix(loss=f"{row['train_loss']:.4f}", val_acc=f"{row['val_acc']:.4f}")
    finally:
        bar.close()
    loop.save_state(loop.total_steps)
    for hook in loop.hooks:
        hook.on_train_end(ctx)
    return LoopOutput(metrics, dict(loop._states), wall())


def _stepping_hook(hooks: Sequence[TrainHook]) -> TrainHook | None:
    """The hook that steps the optimizer itself (None: the loop calls ``optimizer.step()``)."""
    steppers = [hook for hook in hooks if hook.steps_optimizer]
    if len(steppers) > 1:
        names = [type(hook).__name__ for hook in steppers]
        raise ValueError(f"at most one hook may step the optimizer, got {names}")
    return steppers[0] if steppers else None


def _record(loop: Loop, ctx: TrainContext, step: int, train_loss: float | None, wall: float):
    if loop.parallel is not None and train_loss is not None:
        train_loss = loop.parallel.mean(train_loss)  # over ranks: the global batch's loss
    row = loop.eval_row(step, train_loss, wall, ctx.logs)
    if loop.run is not None:  # durable before the checkpoint that counts it
        loop._lines.append(loop.run.append_metrics(row))
    if loop.parallel is not None:  # collective: every rank writes its shards
        loop.parallel.save_resume(
            step=step,
            model=loop.model,
            optimizer=loop.optimizer,
            hooks=[h.state_dict() for h in loop.hooks],
            wall_s=wall,
            metrics=loop._lines,
        )
    elif loop.run is not None:
        run_state.save_resume(
            run_state.resume_path(loop.run.path),
            step=step,
            model=loop.model,
            optimizer=loop.optimizer,
            hooks=[h.state_dict() for h in loop.hooks],
            wall_s=wall,
            metrics=loop._lines,
            scaler=loop.amp.state_dict(),
        )
    if loop.log_fn is not None:
        loop.log_fn(row)
    return row


def _load_hook_states(hooks: Sequence[TrainHook], states: list[dict[str, Any]]) -> None:
    if len(states) != len(hooks):
        raise ValueError(
            f"the resume checkpoint holds {len(states)} hook state(s) but the run has "
            f"{len(hooks)} hook(s): resume with the hooks it was started with"
        )
    for hook, state in zip(hooks, states):
        hook.load_state_dict(state)


def _saved_states(run: RunDir | None) -> dict[int, Path]:
    return {} if run is None else run_state.saved_model_states(run.path)


def _diverged_message(loop: Loop, step: int, value: float) -> str:
    where = f"loss became {value} at step {step} (epoch {step / loop.steps_per_epoch:.2f})"
    if loop.run is None:
        return f"{where}; stopped (in-memory run: nothing saved). Lower the learning rate?"
    resume = run_state.resume_path(loop.run.path)
    kept = f"the last good checkpoint is {str(resume)!r}" if resume.is_file() else "no checkpoint"
    return f"{where}; stopped, {kept}. Lower the learning rate?"
