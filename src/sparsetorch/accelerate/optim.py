"""Optimizer steps over the kept entries of accelerated weights, inside torch.optim.

Registered as a sparse stepper of ``sparsetorch.masking.enforce`` (its pre-step hook runs it;
the parameters it updates are hidden from the optimizer's own dense update). For the weight of
an :class:`AcceleratedLinear` on its sparse path, ``torch.optim.Adam``, ``AdamW`` and ``SGD``
are replaced by the same update computed on the kept entries only
(``kernels.cpu`` ``adam_step`` / ``sgd_step``), which:

* reads the hyperparameters of the parameter's group at step time (``lr`` set by schedulers,
  betas, eps, weight_decay, amsgrad, maximize, momentum, dampening, nesterov), and honours
  AdamW's decoupled weight decay;
* keeps the moments PACKED (``packed_state.py``): ``optimizer.state[param]`` holds torch.optim's
  keys (``step``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``, ``momentum_buffer``) with
  ``(nnz,)`` tensors of the kept entries in CSR order, plus ``"sparsetorch_packed"``, the
  index structure they follow; nothing shaped like the weight is allocated for them, and the
  step reads and writes them sequentially. Pruned entries have no state, which is what masked
  dense training keeps there (zeros);
* so that ``optimizer.state_dict()`` still returns torch.optim's dense layout (a post hook),
  ``load_state_dict`` of a dense state packs it again, and the state is unpacked into
  torch.optim's layout before the optimizer's own dense update runs for the weight (its layer
  took the dense path, was restored, or the group needs an update not replaced here): the
  optimizer object and its checkpoints are those of masked dense training.

Not replaced (the optimizer's own dense update runs, exact but O(weight)): other optimizer
classes or subclasses, ``capturable``/``differentiable`` groups, complex parameters, and a
state that is neither packed nor torch.optim's layout.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from sparsetorch.accelerate import packed_state
from sparsetorch.accelerate.packed_state import PACKED, is_packed, pack_, remap_, unpack_
from sparsetorch.masking.enforce import SPARSE_STEPPERS, STATE_ZEROERS
from sparsetorch.masking.module_masks import OWNER_ATTR

Rule = Callable[[torch.optim.Optimizer, dict, torch.Tensor, object], bool]
RULES: dict[type, Rule] = {}


def _scalar(value) -> float:
    return float(value.item()) if isinstance(value, torch.Tensor) else float(value)


def _step_dtype() -> torch.dtype:  # torch.optim's dtype of the ``step`` tensor
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _adopt(optimizer, state: dict, param: torch.Tensor, layer) -> bool:
    """Bring existing ``state`` to the layer's current packing (pack a dense one, follow a
    mask change); False when it is in a layout we do not know."""
    st = layer._sparse_state
    if is_packed(state):
        remap_(state, st.packed)
    elif not pack_(state, param, st.packed, layer._sparse_ops):
        return False
    packed_state.hook(optimizer)
    return True


def _packed_zeros(param: torch.Tensor, nnz: int) -> torch.Tensor:
    return torch.zeros(nnz, dtype=param.dtype, device=param.device)


def _valid(tensors, param: torch.Tensor, nnz: int) -> bool:
    return all(
        isinstance(t, torch.Tensor)
        and t.dim() == 1
        and t.numel() == nnz
        and t.dtype == param.dtype
        and t.is_contiguous()
        for t in tensors
    )


def _adam(optimizer: torch.optim.Optimizer, group: dict, param: torch.Tensor, layer) -> bool:
    if group.get("capturable") or group.get("differentiable") or param.is_complex():
        return False
    state = optimizer.state[param]
    amsgrad = bool(group["amsgrad"])
    st, ops = layer._sparse_state, layer._sparse_ops
    nnz = st.packed.nnz
    if not state:  # torch.optim.Adam's lazy initialisation, packed
        state["step"] = torch.tensor(0.0, dtype=_step_dtype())
        state["exp_avg"] = _packed_zeros(param, nnz)
        state["exp_avg_sq"] = _packed_zeros(param, nnz)
        if amsgrad:
            state["max_exp_avg_sq"] = _packed_zeros(param, nnz)
        state[PACKED] = st.packed
        packed_state.hook(optimizer)
    elif not _adopt(optimizer, state, param, layer):
        return False
    names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if amsgrad else ("exp_avg", "exp_avg_sq")
    tensors = [state.get(n) for n in names]
    if not isinstance(state.get("step"), torch.Tensor) or not _valid(tensors, param, nnz):
        return False
    grad, packed = st.grad_source(param)
    state["step"] += 1
    step = _scalar(state["step"])
    beta1, beta2 = (_scalar(b) for b in group["betas"])
    lr = _scalar(group["lr"])
    decoupled = bool(group.get("decoupled_weight_decay", isinstance(optimizer, torch.optim.AdamW)))
    ops.adam_step(
        param.detach(),
        grad,
        packed,
        tensors[0],
        tensors[1],
        tensors[2] if amsgrad else None,
        st.packed.rowptr,
        st.packed.cols,
        st.vals,
        lr,
        beta1,
        beta2,
        float(group["eps"]),
        float(group["weight_decay"]),
        decoupled,
        bool(group["maximize"]),
        1 - beta1**step,
        (1 - beta2**step) ** 0.5,
    )
    st.stepped(param)
    return True


def _sgd(optimizer: torch.optim.Optimizer, group: dict, param: torch.Tensor, layer) -> bool:
    if group.get("differentiable") or param.is_complex():
        return False
    momentum = float(group["momentum"])
    state = optimizer.state[param]
    st, ops = layer._sparse_state, layer._sparse_ops
    if state and not _adopt(optimizer, state, param, layer):
        return False
    buf, first = None, False
    if momentum != 0:
        buf = state.get("momentum_buffer")
        if buf is None:  # torch.optim.SGD starts it as a copy of the first gradient
            buf, first = torch.empty(st.packed.nnz, dtype=param.dtype), True
        elif not _valid([buf], param, st.packed.nnz):
            return False
    grad, packed = st.grad_source(param)
    ops.sgd_step(
        param.detach(),
        grad,
        packed,
        buf,
        first,
        st.packed.rowptr,
        st.packed.cols,
        st.vals,
        _scalar(group["lr"]),
        momentum,
        float(group["dampening"]),
        float(group["weight_decay"]),
        bool(group["nesterov"]),
        bool(group["maximize"]),
    )
    if buf is not None:
        state["momentum_buffer"] = buf
        state[PACKED] = st.packed
        packed_state.hook(optimizer)
    st.stepped(param)
    return True


RULES[torch.optim.Adam] = _adam
RULES[torch.optim.AdamW] = _adam
RULES[torch.optim.SGD] = _sgd


def _accelerated(param: torch.Tensor, stepping: bool):
    """The accelerated layer whose sparse weight ``param`` is, its packing refreshed; None when
    it is not one (or, ``stepping``, when its last forward took the dense path or there is no
    gradient)."""
    from sparsetorch.accelerate.linear import DTYPES, AcceleratedLinear

    owner = getattr(param, OWNER_ATTR, None)
    if owner is None:
        return None
    module, name = owner
    if (
        name != "weight"
        or not isinstance(module, AcceleratedLinear)
        or module._parameters.get("weight") is not param
        or (stepping and (module.__dict__.get("last_path") != "sparse" or param.grad is None))
    ):
        return None
    mask = module.sparse_mask()
    if mask is None or param.device.type != "cpu" or param.dtype not in DTYPES:
        return None
    # the mask may have changed since the backward (a topology update): re-pack to it
    packed = module._sparse_state.refresh(module, mask, module._sparse_ops)
    return module if packed.density <= module.max_density else None


def sparse_step(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """Update the accelerated sparse weights of ``optimizer`` (exact types Adam, AdamW, SGD);
    returns the parameters updated. Packed state of any other parameter that the optimizer's
    own update will step is unpacked into torch.optim's layout first."""
    rule = RULES.get(type(optimizer))
    done = []
    with torch.no_grad():
        for group in optimizer.param_groups:
            for param in group["params"]:
                layer = None if rule is None else _accelerated(param, stepping=True)
                if layer is not None and rule(optimizer, group, param, layer):
                    done.append(param)
                elif param.grad is not None:
                    state = optimizer.state.get(param)
                    if state:
                        unpack_(state, param)
    return done


@torch.no_grad()
def pack_loaded_(optimizer: torch.optim.Optimizer) -> None:
    """Pack the dense state of every accelerated sparse weight of ``optimizer`` (after
    ``load_state_dict``); the rest stays in torch.optim's layout."""
    if type(optimizer) not in RULES:
        return
    for group in optimizer.param_groups:
        if group.get("capturable") or group.get("differentiable"):
            continue
        for param in group["params"]:
            state = optimizer.state.get(param)
            if state and not is_packed(state) and not param.is_complex():
                layer = _accelerated(param, stepping=False)
                if layer is not None:
                    _adopt(optimizer, state, param, layer)


def _zero_packed(optimizer: torch.optim.Optimizer, param: torch.Tensor, where) -> None:
    state = optimizer.state.get(param)
    if state:
        packed_state.zero_packed_at_(state, param, where)


def install() -> None:
    """Register :func:`sparse_step` with the mask hooks, and the zeroing of packed state at
    changed mask positions with ``set_mask`` (once)."""
    if sparse_step not in SPARSE_STEPPERS:
        SPARSE_STEPPERS.append(sparse_step)
    if _zero_packed not in STATE_ZEROERS:
        STATE_ZEROERS.append(_zero_packed)
