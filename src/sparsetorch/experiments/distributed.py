"""What ``sparsetorch train --distributed ddp|fsdp`` (``train(..., distributed=...)``) adds
to the one training loop: a :class:`Parallel` that the runner asks at a few fixed points.

* **Data**: every rank computes the same global batch (the single-process run's), takes its
  contiguous share (sizes differ by at most one) and scales its mean loss by
  ``local * world / global``, so that DDP's / FSDP's gradient average is the gradient of the
  global batch's mean loss, as in one process. The logged train loss is averaged over ranks.
* **Model**: DDP wraps it (mask buffers out of the broadcast); FSDP2 shards it in place
  (``fully_shard`` per prunable module, masks sharded like weights). Hooks see the plain
  module (DDP) or the sharded one (FSDP): same parameter names as in one process.
* **Checks** (collectives with the group's timeout): the config and model structure hash
  agree on every rank before training; masks are verified identical after every topology
  change (on unless Python runs with ``-O``).
* **Files**: only rank 0 writes the run dir. Model states (``model_step<k>``) are gathered to
  rank 0 (FSDP: full state dict) in the single-process format. The resume checkpoint is a
  DCP directory per evaluation (``checkpoints/resume_dcp_<step>``: model, masks and optimizer,
  sharded) plus ``resume.pt`` (step, RNG, hook states with masks gathered); it resumes on any
  world size, and is deleted when the run finishes.
"""

from __future__ import annotations

import copy
import shutil
import types
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsetorch.distributed.dcp import load_checkpoint, save_checkpoint
from sparsetorch.distributed.parallel import ddp, fsdp
from sparsetorch.distributed.verify import check_same_config, verify_masks
from sparsetorch.experiments import run_state
from sparsetorch.experiments.hooks import TrainContext, TrainHook
from sparsetorch.sharding.dtensor import is_dtensor
from sparsetorch.sharding.topk import GroupComm

MODES = ("ddp", "fsdp")
RESUME_FORMAT = "dcp-1"
DCP_PREFIX = "resume_dcp_"


def require_process_group() -> None:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            "distributed training needs an initialised process group: launch with torchrun "
            "(sparsetorch train --distributed ... does the rest) or call "
            "torch.distributed.init_process_group() before train(..., distributed=...)"
        )


class Parallel:
    """One rank's view of a distributed run (see the module docstring)."""

    def __init__(self, mode: str, device: torch.device, verify: bool = __debug__) -> None:
        if mode not in MODES:
            raise ValueError(f"distributed must be one of {', '.join(MODES)}, got {mode!r}")
        require_process_group()
        import torch.distributed as dist

        self.mode = mode
        self.device = torch.device(device)
        self.verify = verify
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.comm = GroupComm(what="distributed training")
        self.forward_model: nn.Module | None = None
        self.run_path: Path | None = None

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    # ---------------------------------------------------------------- start
    def check(self, hparams: Any, model: nn.Module, n_train: int) -> None:
        """Same config and model on every rank; every batch has an example for every rank."""
        self.check_batches(n_train, hparams.training.batch_size)
        config = hparams.to_dict()
        config.get("dataset", {}).pop("data_dir", None)  # where the files are may differ
        check_same_config({"hparams": config, "mode": self.mode}, model)

    def check_batches(self, n_train: int, batch: int) -> None:
        """Every batch (the last of an epoch may be smaller) has an example for every rank."""
        last = n_train - (-(-n_train // batch) - 1) * batch
        if min(batch, last) < self.world_size:
            raise ValueError(
                f"a batch of {min(batch, last)} example(s) cannot be split over "
                f"{self.world_size} ranks (batch_size {batch}, {n_train} training examples): "
                "every batch needs at least one example per rank"
            )

    def wrap(self, model: nn.Module) -> nn.Module:
        """Make ``model`` data-parallel; returns the module to run forward passes through."""
        if self.mode == "ddp":
            kwargs = {"device_ids": [self.device]} if self.device.type == "cuda" else {}
            self.forward_model = ddp(model, **kwargs)
        else:
            from torch.distributed.device_mesh import init_device_mesh

            if self.is_writer:  # the architecture, without storage, for the result model
                self._template = copy.deepcopy(model).to("meta")
            mesh = init_device_mesh(self.device.type, (self.world_size,))
            self.forward_model = fsdp(model, mesh=mesh)
        return self.forward_model

    def hook(self) -> TrainHook:
        return ParallelHook(self)

    # ---------------------------------------------------------------- data
    def share(self, n: int) -> tuple[int, int]:
        """[start, stop) of this rank's share of a global batch of ``n``."""
        return self.rank * n // self.world_size, (self.rank + 1) * n // self.world_size

    def local_batch(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        start, stop = self.share(len(y))
        return x[start:stop], y[start:stop]

    def loss_scale(self, n: int) -> float:
        start, stop = self.share(n)
        return (stop - start) * self.world_size / n

    def mean(self, value: float) -> float:
        """The mean of ``value`` over the ranks (collective)."""
        total = self.comm.sum(torch.tensor([value], dtype=torch.float64))
        return float(total) / self.world_size

    # ---------------------------------------------------------------- files
    def _full_state(self, model: nn.Module) -> dict[str, torch.Tensor] | None:
        """The whole model state on CPU on rank 0 (None elsewhere); FSDP gathers (collective)."""
        if self.mode == "ddp":
            return model.state_dict() if self.is_writer else None
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        state = get_model_state_dict(model, options=options)
        return state if self.is_writer else None

    def save_model_state(self, model: nn.Module, path: Path | None) -> Any:
        """Rank 0's record of the model at a step: the written path, or (in memory) the state
        dict; None on the other ranks."""
        state = self._full_state(model)
        if state is None:
            return None
        if path is None:
            return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}
        holder = types.SimpleNamespace(state_dict=lambda: state)  # what save_model_state reads
        return run_state.save_model_state(holder, path)

    def save_resume(
        self,
        *,
        step: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        hooks: list[dict[str, Any]],
        wall_s: float,
        metrics: list[str] | None = None,
    ) -> None:
        """DCP directory (all ranks) + ``resume.pt`` (rank 0, with the metrics lines so far),
        then older directories go."""
        if self.run_path is None:
            return
        folder = self.run_path / run_state.CHECKPOINT_DIR
        save_checkpoint(folder / f"{DCP_PREFIX}{step}", model, optimizer)
        hook_states = _gathered(hooks[:-1])  # the last hook is ours: no state
        if not self.is_writer:
            return
        state = {
            "format": RESUME_FORMAT,
            "step": step,
            "dcp": f"{DCP_PREFIX}{step}",
            "world_size": self.world_size,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "hooks": hook_states,
            "wall_s": wall_s,
            "metrics": list(metrics or []),
        }
        run_state.atomic_save(state, run_state.resume_path(self.run_path))
        for old in folder.glob(f"{DCP_PREFIX}*"):
            if old.name != state["dcp"]:
                shutil.rmtree(old, ignore_errors=True)

    def load_resume(self, path: Path) -> dict[str, Any]:
        state = run_state.safe_load(path)
        if isinstance(state, dict) and state.get("format") == run_state.RESUME_FORMAT:
            state = dict(state, hooks=[*state["hooks"], {}])  # a one-process run's checkpoint
            return state
        if not isinstance(state, dict) or state.get("format") != RESUME_FORMAT:
            raise ValueError(f"checkpoint {str(path)!r} is not a resume checkpoint of this version")
        return dict(state, hooks=[*state["hooks"], {}], path=str(path))

    def restore_resume(
        self, state: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer
    ) -> None:
        if state["format"] == run_state.RESUME_FORMAT:  # written by a one-process run
            if self.mode == "fsdp":
                raise ValueError(
                    "this run dir was checkpointed by a one-process run: resume it without "
                    "--distributed, or with --distributed ddp"
                )
            run_state.restore_resume(state, model, optimizer)
            return
        load_checkpoint(Path(state["path"]).parent / state["dcp"], model, optimizer)
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])

    def result_model(self, model: nn.Module, final_state: Any) -> nn.Module:
        """The model ``train`` returns: the plain module (DDP); for FSDP, on rank 0 a plain
        module holding the gathered final state (reports need whole tensors), elsewhere the
        sharded one."""
        if self.mode == "ddp" or not self.is_writer:
            return model
        state = (
            run_state.load_model_state(final_state)
            if isinstance(final_state, str | Path)
            else final_state
        )
        plain = self._template.to_empty(device=self.device)
        return run_state.load_into(plain, state)


def _gathered(states: Any) -> Any:
    """Hook states with every DTensor gathered into a plain tensor (collective)."""
    if is_dtensor(states):
        return states.full_tensor().cpu()
    if isinstance(states, dict):
        return {k: _gathered(v) for k, v in states.items()}
    if isinstance(states, list | tuple):
        return type(states)(_gathered(v) for v in states)
    return states


class ParallelHook(TrainHook):
    """Runs last: scales the loss of an uneven share; verifies masks at the start and after
    every change of any mask (collective)."""

    def __init__(self, parallel: Parallel) -> None:
        self.parallel = parallel
        self._versions: int | None = None

    def _global_batch(self, ctx: TrainContext, step: int) -> int:
        batch = ctx.hparams.training.batch_size
        position = step % ctx.steps_per_epoch
        return min(batch, len(ctx.data.train) - position * batch)

    def before_backward(self, ctx: TrainContext, step: int, loss: torch.Tensor) -> Any:
        scale = self.parallel.loss_scale(self._global_batch(ctx, step))
        return None if scale == 1.0 else loss * scale

    def on_train_start(self, ctx: TrainContext) -> None:
        self._check(ctx, "the start")

    def on_train_end(self, ctx: TrainContext) -> None:
        """A finished run needs no resume checkpoint: its DCP directories are the size of
        the model and optimizer, and ``resume.pt`` in the distributed format would stop
        one-process readers of the run dir (``latest_model_state``, ``sparsetorch export``);
        the final model state is there whole."""
        if ctx.run_dir is not None:  # rank 0 of a run with a run dir
            folder = ctx.run_dir / run_state.CHECKPOINT_DIR
            run_state.resume_path(ctx.run_dir).unlink(missing_ok=True)
            for old in folder.glob(f"{DCP_PREFIX}*"):
                shutil.rmtree(old, ignore_errors=True)

    def after_step(self, ctx: TrainContext, step: int) -> None:
        self._check(ctx, f"step {step}")

    def _check(self, ctx: TrainContext, where: str) -> None:
        if not self.parallel.verify:
            return
        versions = sum(
            getattr(m, "_sparsetorch_version", 0)
            for m in ctx.model.modules()
            if hasattr(m, "_sparsetorch_masked")
        )
        if versions != self._versions:
            verify_masks(ctx.model, where=where)
            self._versions = versions


__all__ = ["MODES", "Parallel", "ParallelHook", "require_process_group"]
