"""Every checkpoint read and write of the runner goes through this module (so the storage can
switch to sparsetorch's compressed safetensors format in one place).

Two kinds of file, both written atomically (temp file in the same directory + ``os.replace``)
and read with ``torch.load(weights_only=True)`` (no pickle code execution):

* a **model state** (``checkpoints/model_step<k>.safetensors``): the model's ``state_dict()``,
  masks included as ``<param>_sparsity_mask`` bool buffers (run dirs written when they were
  ``<param>_mask`` load the same), in sparsetorch's compressed safetensors
  format (``sparsetorch.checkpoint``: only kept values plus the cheapest index encoding, no
  pickle, checksummed);
* the **resume checkpoint** (``checkpoints/resume.pt``): model, optimizer, global RNG state,
  step, elapsed wall time, the hooks' ``state_dict()``s and a copy of every metrics.jsonl line
  so far (a resume repairs the file from it). Hook states must hold only what
  ``weights_only`` loading accepts: tensors, numbers, strings, bools, None, lists, tuples, dicts.

:func:`check_run_dir` refuses, before anything is loaded, a run dir this sparsetorch cannot
read: model states pickled with ``torch.save`` (``model_step<k>.pt``, written before the
safetensors format; never unpickled), a ``.safetensors`` name holding something else, or a
missing or unknown checkpoint format version. One error names the directory, the file, and
what to do.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsetorch._files import atomic_write
from sparsetorch.experiments.rundir import RESULT_FILE
from sparsetorch.masking import apply_masks, masks_from_state_dict, migrate_state_dict

CHECKPOINT_DIR = "checkpoints"
RESUME_FILE = "resume.pt"
RESUME_FORMAT = 1
MODEL_PREFIX, MODEL_SUFFIX = "model_step", ".safetensors"


def model_state_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"{MODEL_PREFIX}{step}{MODEL_SUFFIX}"


def saved_model_states(run_dir: str | Path) -> dict[int, Path]:
    """{step: path} of every model state saved in a run dir."""
    out = {}
    for path in (Path(run_dir) / CHECKPOINT_DIR).glob(f"{MODEL_PREFIX}*{MODEL_SUFFIX}"):
        step = path.name.removeprefix(MODEL_PREFIX).removesuffix(MODEL_SUFFIX)
        if step.isdigit():
            out[int(step)] = path
    return out


class UnreadableRunDir(ValueError):
    """A run dir written in a checkpoint format this sparsetorch does not read."""

    def __init__(self, run_dir: str | Path, found: str) -> None:
        super().__init__(
            f"run dir {str(run_dir)!r} cannot be used by this sparsetorch: {found}; its "
            "checkpoints cannot be resumed or reused: delete it or use another --out (run_dir)"
        )


_PICKLE_STARTS = (b"PK\x03\x04", b"\x80")  # torch.save: a zip archive, or a legacy pickle


def check_run_dir(run_dir: str | Path) -> None:
    """Raise :class:`UnreadableRunDir` unless every model state in ``run_dir`` is a
    sparsetorch safetensors checkpoint of a known format version (headers only are read)."""
    from sparsetorch.checkpoint import CheckpointError
    from sparsetorch.checkpoint.header import read_header, sparsetorch_metadata

    run_dir = Path(run_dir)
    folder = run_dir / CHECKPOINT_DIR
    for old in sorted(folder.glob(f"{MODEL_PREFIX}*.pt"), key=_step_order):
        found = f"{CHECKPOINT_DIR}/{old.name} is a torch.save pickle (model states before the"
        raise UnreadableRunDir(run_dir, f"{found} safetensors format)")
    _check_result_states(run_dir)
    for _, path in sorted(saved_model_states(run_dir).items()):
        name = f"{CHECKPOINT_DIR}/{path.name}"
        try:
            if sparsetorch_metadata(read_header(path)) is None:
                raise UnreadableRunDir(run_dir, f"{name} has no sparsetorch format version")
        except CheckpointError as exc:
            with open(path, "rb") as fh:
                if fh.read(4).startswith(_PICKLE_STARTS):
                    raise UnreadableRunDir(run_dir, f"{name} is a torch.save pickle") from None
            reason = str(exc).removeprefix(f"{path}: ")
            raise UnreadableRunDir(run_dir, f"{name} cannot be read ({reason})") from None


def _step_order(path: Path) -> tuple[int, str]:
    step = path.stem.removeprefix(MODEL_PREFIX)
    return (int(step) if step.isdigit() else -1, path.name)


def _check_result_states(run_dir: Path) -> None:
    """A finished run's result.json must point at safetensors model states inside the run dir
    (a crafted ``../../x.safetensors`` would be read from anywhere)."""
    result_file = run_dir / RESULT_FILE
    if not result_file.is_file():
        return
    try:
        states = json.loads(result_file.read_text()).get("states", {})
    except (json.JSONDecodeError, AttributeError):
        return  # a corrupt result.json gets its own error where it is read
    for rel in states.values() if isinstance(states, dict) else ():
        if not str(rel).endswith(MODEL_SUFFIX):
            raise UnreadableRunDir(run_dir, f"{RESULT_FILE} lists the model state {rel!r}")
        if not _inside(run_dir, str(rel)):
            raise UnreadableRunDir(
                run_dir, f"{RESULT_FILE} lists the model state {rel!r} outside the run dir"
            )


def _inside(run_dir: Path, rel: str) -> bool:
    """``rel`` names a path under ``run_dir`` (relative, and no ``..`` or link leads out)."""
    if Path(rel).is_absolute():
        return False
    root = run_dir.resolve()
    return (root / rel).resolve().is_relative_to(root)


def resume_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / RESUME_FILE


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temp file next to ``path``, fsynced, then renamed over it
    (``sparsetorch._files.atomic_write``). Saved through an open file, not a path: torch names
    the archive's root folder after a path's file name (here the temp file's random one), so
    the same object would give different bytes on every save."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            torch.save(obj, f)

    return atomic_write(path, write)


def safe_load(path: str | Path) -> Any:
    """``torch.load(weights_only=True)`` on CPU, with one clear error for a bad file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle.UnpicklingError, RuntimeError, EOFError ...
        raise ValueError(f"checkpoint {str(path)!r} cannot be read: {exc}") from exc


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def save_model_state(model: nn.Module, path: str | Path) -> Path:
    return save_state_dict(_cpu_state(model), path)


def save_state_dict(state: Mapping[str, torch.Tensor], path: str | Path) -> Path:
    from sparsetorch.checkpoint import save  # atomic: temp file + os.replace

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save(dict(state), path)
    return path


def load_model_state(path: str | Path) -> dict[str, torch.Tensor]:
    from sparsetorch.checkpoint import load

    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    return load(path)


def load_into(model: nn.Module, state: Mapping[str, torch.Tensor]) -> nn.Module:
    """Load a state dict that may carry ``<param>_sparsity_mask`` buffers (or ``<param>_mask``,
    their name before): attach those masks first, so the masked model is restored exactly
    (weights, masks, zeros)."""
    state = migrate_state_dict(dict(state))
    masks = masks_from_state_dict(state)
    if masks:
        apply_masks(model, masks)
    model.load_state_dict(state)
    return model


def save_resume(
    path: str | Path,
    *,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    hooks: list[dict[str, Any]],
    wall_s: float,
    metrics: list[str] | None = None,
    scaler: dict[str, Any] | None = None,
) -> Path:
    """Write the resume checkpoint. ``metrics``: the lines of metrics.jsonl so far (already
    durable on disk), kept so that a resume can repair that file; ``scaler``: the GradScaler's
    state of an fp16 run."""
    state = {
        "format": RESUME_FORMAT,
        "step": step,
        "model": _cpu_state(model),
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "hooks": hooks,
        "wall_s": wall_s,
        "metrics": list(metrics or []),
    }
    if scaler is not None:
        state["scaler"] = scaler
    return atomic_save(state, path)


def load_resume(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    state = safe_load(path)
    found = state.get("format") if isinstance(state, dict) else type(state).__name__
    if isinstance(found, str) and found.startswith("dcp-"):  # a distributed run's checkpoint
        raise ValueError(
            f"{str(path)!r} was written by a distributed run (its model and optimizer are a "
            "torch.distributed.checkpoint): resume it with torchrun and --distributed ddp or "
            "fsdp, on any number of ranks, 1 included (torchrun --nproc_per_node 1 -m "
            "sparsetorch train ... --distributed ddp)"
        )
    if found != RESUME_FORMAT:
        run_dir = path.parent.parent if path.parent.name == CHECKPOINT_DIR else path.parent
        raise UnreadableRunDir(
            run_dir,
            f"{path.relative_to(run_dir)} is not a resume checkpoint of this version (resume "
            f"format {found!r}; this sparsetorch reads {RESUME_FORMAT})",
        )
    return state


def restore_resume(
    state: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer
) -> None:
    """Put model, optimizer and RNG back where :func:`save_resume` found them."""
    load_into(model, state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])


def latest_model_state(run_dir: str | Path) -> tuple[int, dict[str, torch.Tensor]]:
    """``(step, state_dict)`` of the newest model in a run dir: the final model of a finished
    run, else the model in the resume checkpoint (for ``sparsetorch export``)."""
    run_dir = Path(run_dir)
    check_run_dir(run_dir)
    states = sorted(saved_model_states(run_dir).items())
    resume = load_resume(resume_path(run_dir)) if resume_path(run_dir).is_file() else None
    if states and (resume is None or states[-1][0] >= resume["step"]):
        return states[-1][0], load_model_state(states[-1][1])
    if resume is not None:
        return resume["step"], resume["model"]
    raise FileNotFoundError(f"run dir {str(run_dir)!r} holds no checkpoint")
