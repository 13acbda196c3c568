"""What GMP, SET and RigL share: the masked parameter set, the step counter, checks, logging of
each topology update, and resumable state.

Use in any training loop::

    algo = st.RigL(model, optimizer, sparsity=0.9, total_steps=T)
    for x, y in batches:
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        algo.step()          # optimizer.step() + the topology update when one is due

``step()`` = ``before_optimizer_step(t)`` (RigL updates here, on the dense gradient, and skips
the optimizer step of that iteration as the paper does) + ``optimizer.step()`` +
``after_optimizer_step(t)`` (GMP and SET update here). The runner's hook calls ``step()``.

With mixed precision, pass the GradScaler: ``algo.step(scaler=scaler)`` after
``scaler.scale(loss).backward()``. The gradients are unscaled first (unless you already called
``scaler.unscale_(optimizer)``), so RigL grows on the true gradient; the optimizer steps through
``scaler.step(optimizer)``, then ``scaler.update()``. When a gradient is inf or NaN the scaler
skips the optimizer step, and the topology update of that iteration is skipped too (counted
in ``skipped_steps``).
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import nn

from sparsetorch._checks import check_not_meta, is_int, is_real
from sparsetorch.algorithms.during.churn import update_stats
from sparsetorch.masking import (
    attach_mask,
    get_mask,
    in_dim_of,
    prunable_parameters,
    take_over_torch_pruning,
)
from sparsetorch.masking.enforce import zero_state_
from sparsetorch.masking.prunable import FilterFn
from sparsetorch.patterns import Pattern


def check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    if value < low or (high is not None and value > high):
        upper = "" if high is None else f", {high}]"
        raise ValueError(f"{name} must be in [{low}{upper or ', inf)'}, got {value}")
    return value


def check_fraction(name: str, value: Any, *, closed: bool = True) -> float:
    if not is_real(value):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    ok = 0.0 <= value <= 1.0 if closed else 0.0 <= value < 1.0
    if not ok:
        raise ValueError(f"{name} must be in [0, 1{']' if closed else ')'}, got {value}")
    return float(value)


def derived_seed(seed: int) -> int:
    """The seed of the algorithm's own generator, derived from (never equal to) ``seed``: a
    user who also calls ``torch.manual_seed(seed)`` to initialise the weights would otherwise
    get random masks drawn from the very bits that drew the weights (correlated with them)."""
    digest = hashlib.sha256(f"sparsetorch.during:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def make_generator(seed: int | None, generator: torch.Generator | None) -> torch.Generator:
    """A CPU generator from ``seed`` (default 0; see :func:`derived_seed`) or the given one
    (used as is); not both."""
    if generator is not None:
        if seed is not None:
            raise ValueError("pass seed or generator, not both")
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        return generator
    seed = check_int("seed", 0 if seed is None else seed, 0)
    return torch.Generator().manual_seed(derived_seed(seed))


class DynamicSparsity:
    """Base class; subclasses set ``method`` and override the two update points."""

    method = "dynamic"

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        total_steps: int,
        exclude: list[str] | None = None,
        filter_fn: FilterFn | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        check_not_meta(model, "model")
        self.model = model
        self.optimizer = optimizer
        self.total_steps = check_int("total_steps", total_steps, 1)
        self.exclude = list(exclude) if exclude else None
        self.filter_fn = filter_fn
        take_over_torch_pruning(model)  # torch.nn.utils.prune's masks become starting masks
        self.targets = prunable_parameters(model, exclude=self.exclude, filter_fn=filter_fn)
        if not self.targets:
            raise ValueError("model has no prunable parameters (Linear/Conv/Embedding weights)")
        owned = {id(p) for group in optimizer.param_groups for p in group["params"]}
        missing = [full for full, m, n in self.targets if id(m._parameters[n]) not in owned]
        if missing:
            raise ValueError(
                f"optimizer does not own the model's parameters {missing[:3]}"
                f"{' ...' if len(missing) > 3 else ''}: build it from model.parameters()"
            )
        self.generator = generator  # for the methods that draw random numbers
        self.t = 0  # optimizer iterations done (setting it announces that step's needs)
        self.skipped_steps = 0  # iterations a GradScaler skipped (inf/NaN gradients)
        self.history: list[dict[str, Any]] = []
        self.initial_masks: dict[str, torch.Tensor] = {}

    # ----------------------------------------------------------------- the training step
    @property
    def t(self) -> int:
        """Optimizer iterations done: the next backward/step is iteration ``t``."""
        return self._t

    @t.setter
    def t(self, value: int) -> None:
        self._t = value
        self.request_gradients(value)

    def needs_dense_gradient(self, t: int) -> bool:
        """Whether iteration ``t`` reads the dense gradient of pruned weights (RigL's grow
        step). Sparse-kernel layers (``sparsetorch.accelerate``) compute it only then."""
        return False

    def request_gradients(self, t: int) -> None:
        """Tell the layers of the masked weights whether iteration ``t``'s backward must give
        the dense gradient (module attribute ``_sparsetorch_dense_grad``, read by
        ``sparsetorch.accelerate``; masked dense layers always give it)."""
        want = self.needs_dense_gradient(t)
        for _, module, _ in self.targets:
            module._sparsetorch_dense_grad = want

    def step(self, scaler: torch.amp.GradScaler | None = None) -> None:
        """Call after ``loss.backward()`` (``scaler.scale(loss).backward()`` with a
        ``scaler``): steps the optimizer and updates the topology when one is due."""
        if scaler is not None and not isinstance(scaler, torch.amp.GradScaler):
            raise TypeError(f"scaler must be a torch.amp.GradScaler, got {type(scaler).__name__}")
        t = self.t
        if scaler is None or not scaler.is_enabled():
            if not self.before_optimizer_step(t):
                self.optimizer.step()
            self.after_optimizer_step(t)
        else:
            self._scaled_step(t, scaler)
        self.t = t + 1

    def _scaled_step(self, t: int, scaler: torch.amp.GradScaler) -> None:
        if _stage(scaler, self.optimizer) != "unscaled":
            scaler.unscale_(self.optimizer)
        if not _grads_finite(self.optimizer):  # the scaler skips this step: so do we
            self.skipped_steps += 1
            scaler.step(self.optimizer)
            scaler.update()
            if not self.needs_gradients:  # a schedule step on the weights alone: not lost
                self.after_optimizer_step(t)
            return
        if not self.before_optimizer_step(t):
            scaler.step(self.optimizer)
        scaler.update()  # (after an update that replaced the step: unscale_ recorded the check)
        self.after_optimizer_step(t)

    # False for an algorithm whose updates read only the weights (GMP): its update still runs
    # after an iteration whose optimizer step the scaler skipped (no step ever comes back)
    needs_gradients = True

    def before_optimizer_step(self, t: int) -> bool:
        """Between backward and the optimizer step of iteration ``t`` (``param.grad`` is the
        dense gradient). Returns True when this iteration's optimizer step must be skipped."""
        return False

    def after_optimizer_step(self, t: int) -> None:
        """After the optimizer step of iteration ``t``."""

    # ----------------------------------------------------------------- masks and updates
    def masks(self) -> dict[str, torch.Tensor]:
        """{parameter name: a copy of its current mask} over the algorithm's parameters (all
        True for a parameter not masked yet)."""
        out = {}
        for full, module, name in self.targets:
            mask = get_mask(module, name)
            out[full] = (
                mask.clone()
                if mask is not None
                else torch.ones_like(module._parameters[name], dtype=torch.bool)
            )
        return out

    def existing_masks(self, pattern: Pattern) -> bool:
        """True when every parameter already carries a mask (resuming, or a given starting
        topology), checked valid under ``pattern``; False when none does."""
        found = [get_mask(m, n) for _, m, n in self.targets]
        if all(mask is None for mask in found):
            return False
        if any(mask is None for mask in found):
            missing = [full for (full, _, _), mask in zip(self.targets, found) if mask is None]
            raise ValueError(f"some parameters are masked and some not (unmasked: {missing})")
        for (full, module, name), mask in zip(self.targets, found):
            if not pattern.along(in_dim_of(module, name)).is_valid(mask):
                raise ValueError(f"the existing mask of {full} is not a valid {pattern.name} mask")
        return True

    @torch.no_grad()
    def set_mask(self, module: nn.Module, name: str, new: torch.Tensor) -> None:
        """Replace a mask. Newly grown connections start at zero with their optimizer state
        (momentum, Adam moments, ...) zeroed; newly dropped ones are zeroed with their state
        too (the optimizer hooks would do it after the next step; we do not wait)."""
        param = module._parameters[name]
        old = get_mask(module, name)
        changed = ~new if old is None else old ^ new
        attach_mask(module, name, new)
        param.masked_fill_(changed, 0)
        zero_state_(self.optimizer, param, changed)

    def record(self, t: int, before: dict[str, torch.Tensor], **extra: Any) -> dict[str, Any]:
        """Log one update: fraction changed, overlaps, per-layer density (+ ``extra``)."""
        if not self.initial_masks:
            self.initial_masks = before
        stats = update_stats(before, self.masks(), self.initial_masks)
        entry = {"step": t, **extra, **stats}
        self.history.append(entry)
        return entry

    def logs(self) -> dict[str, Any]:
        """Flat metrics of the latest update, for the runner's metrics.jsonl."""
        if not self.history:
            return {}
        last = self.history[-1]
        flat = {f"{self.method}/{k}": v for k, v in last.items() if k != "density"}
        flat.update({f"{self.method}/density/{k}": v for k, v in last["density"].items()})
        return flat

    # ----------------------------------------------------------------- resumable state
    def state_dict(self) -> dict[str, Any]:
        state = {
            "t": self.t,
            "history": list(self.history),
            "initial_masks": dict(self.initial_masks),
        }
        if self.generator is not None:
            state["generator"] = self.generator.get_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        expected = {"t", "history", "initial_masks"} | (
            {"generator"} if self.generator is not None else set()
        )
        if not isinstance(state, dict) or set(state) != expected:
            raise ValueError(f"{type(self).__name__} state must have keys {sorted(expected)}")
        self.t = int(state["t"])
        if self.generator is not None:
            self.generator.set_state(state["generator"])
        self.history = list(state["history"])
        self.initial_masks = dict(state["initial_masks"])


def _stage(scaler: torch.amp.GradScaler, optimizer: torch.optim.Optimizer) -> str:
    """ "unscaled" once ``scaler.unscale_(optimizer)`` ran in this iteration (unscaling twice
    is an error in torch), else "ready"."""
    state = scaler._per_optimizer_states.get(id(optimizer), {})
    stage = state.get("stage")
    return "unscaled" if getattr(stage, "name", None) == "UNSCALED" else "ready"


def _grads_finite(optimizer: torch.optim.Optimizer) -> bool:
    """True when every gradient the optimizer holds is finite: the GradScaler's own test for
    skipping the step (it checks the same gradients after unscaling them)."""
    grads = [
        p.grad._values() if p.grad.is_sparse else p.grad
        for group in optimizer.param_groups
        for p in group["params"]
        if p.grad is not None
    ]
    if not grads:
        return True
    return bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())
