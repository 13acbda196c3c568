"""Optimizer steps over the kept entries of accelerated weights, inside torch.optim.

Registered as a sparse stepper of ``sparsetorch.masking.enforce`` (its pre-step hook runs it;
the parameters it updates are hidden from the optimizer's own dense update). For the weight of
an :class:`AcceleratedLinear` on its sparse path, ``torch.optim.Adam``, ``AdamW`` and ``SGD``
are replaced by the same update computed on the kept entries only
(``kernels.cpu`` ``adam_step`` / ``sgd_step``), which:

* reads the hyperparameters of the parameter's group at step time (``lr`` set by schedulers,
  betas, eps, weight_decay, amsgrad, maximize, momentum, dampening, nesterov), and honours
  AdamW's decoupled weight decay;
* keeps ``optimizer.state[param]`` in torch.optim's own layout (``step`` tensor, dense
  ``exp_avg``/``exp_avg_sq``/``max_exp_avg_sq``/``momentum_buffer`` shaped like the
  parameter), creating it as torch.optim would; pruned entries of the state stay zero, as under
  masked dense training, where their gradient is masked to zero;
* so ``optimizer.state_dict()``, ``load_state_dict``, schedulers and switching back to the
  dense update (``restore_``) keep working, and the optimizer object is the user's.

Not replaced (the optimizer's own dense update runs, exact but O(weight)): other optimizer
classes or subclasses, ``capturable``/``differentiable`` groups, complex parameters, and a
state that is not torch.optim's layout.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from sparsetorch.accelerate.state import dense_zeros
from sparsetorch.masking.enforce import SPARSE_STEPPERS
from sparsetorch.masking.module_masks import OWNER_ATTR

Rule = Callable[[torch.optim.Optimizer, dict, torch.Tensor, object], bool]
RULES: dict[type, Rule] = {}


def _scalar(value) -> float:
    return float(value.item()) if isinstance(value, torch.Tensor) else float(value)


def _step_dtype() -> torch.dtype:  # torch.optim's dtype of the ``step`` tensor
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _adam(optimizer: torch.optim.Optimizer, group: dict, param: torch.Tensor, layer) -> bool:
    if group.get("capturable") or group.get("differentiable") or param.is_complex():
        return False
    state = optimizer.state[param]
    amsgrad = bool(group["amsgrad"])
    st, ops = layer._sparse_state, layer._sparse_ops
    if not state:  # torch.optim.Adam's lazy initialisation (contiguous, like the weight)
        state["step"] = torch.tensor(0.0, dtype=_step_dtype())
        state["exp_avg"] = dense_zeros(param, ops)
        state["exp_avg_sq"] = dense_zeros(param, ops)
        if amsgrad:
            state["max_exp_avg_sq"] = dense_zeros(param, ops)
    names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if amsgrad else ("exp_avg", "exp_avg_sq")
    tensors = [state.get(n) for n in names]
    if not isinstance(state.get("step"), torch.Tensor) or any(
        not isinstance(t, torch.Tensor)
        or t.shape != param.shape
        or t.dtype != param.dtype
        or not t.is_contiguous()
        for t in tensors
    ):
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
    buf, first = None, False
    if momentum != 0:
        buf = state.get("momentum_buffer")
        if buf is None:  # torch.optim.SGD starts it as a copy of the first gradient
            buf, first = dense_zeros(param, ops), True
        elif buf.shape != param.shape or buf.dtype != param.dtype or not buf.is_contiguous():
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
    st.stepped(param)
    return True


RULES[torch.optim.Adam] = _adam
RULES[torch.optim.AdamW] = _adam
RULES[torch.optim.SGD] = _sgd


def _layer_of(param: torch.Tensor):
    """The accelerated layer whose sparse weight ``param`` is, ready for a sparse step; None
    when it is not one (or its last forward took the dense path)."""
    from sparsetorch.accelerate.linear import AcceleratedLinear

    owner = getattr(param, OWNER_ATTR, None)
    if owner is None:
        return None
    module, name = owner
    if (
        name != "weight"
        or not isinstance(module, AcceleratedLinear)
        or module._parameters.get("weight") is not param
        or module.__dict__.get("last_path") != "sparse"
        or param.grad is None
    ):
        return None
    mask = module.sparse_mask()
    if (
        mask is None
        or param.device.type != "cpu"
        or param.dtype
        not in (
            torch.float32,
            torch.bfloat16,
        )
    ):
        return None
    # the mask may have changed since the backward (a topology update): re-pack to it
    packed = module._sparse_state.refresh(module, mask, module._sparse_ops)
    return module if packed.density <= module.max_density else None


def sparse_step(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """Update the accelerated sparse weights of ``optimizer`` (exact types Adam, AdamW, SGD);
    returns the parameters updated."""
    rule = RULES.get(type(optimizer))
    if rule is None:
        return []
    done = []
    with torch.no_grad():
        for group in optimizer.param_groups:
            for param in group["params"]:
                layer = _layer_of(param)
                if layer is not None and rule(optimizer, group, param, layer):
                    done.append(param)
    return done


def install() -> None:
    """Register :func:`sparse_step` with the mask hooks (once)."""
    if sparse_step not in SPARSE_STEPPERS:
        SPARSE_STEPPERS.append(sparse_step)
