"""Optimizer state of accelerated weights, packed: the moments of the kept entries only.

For the weight of an :class:`AcceleratedLinear` stepped by the sparse optimizer steps
(``optim.py``), ``optimizer.state[param]`` holds torch.optim's keys with packed tensors:

* ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq`` (Adam/AdamW), ``momentum_buffer`` (SGD):
  ``(nnz,)`` tensors of the weight's dtype, the kept entries in CSR order (row by row, columns
  ascending: the order of ``mask.nonzero()`` and of the layer's packed weights);
* ``step``: torch.optim's own scalar tensor;
* ``"sparsetorch_packed"`` (:data:`PACKED`): the :class:`~sparsetorch.kernels.cpu.Packed` whose
  order the tensors follow (``Packed.flat()``: their positions in the flattened weight).

Nothing shaped like the weight is allocated for them. Dense copies in torch.optim's layout
(zero where pruned) are made only where they are needed:

* ``optimizer.state_dict()`` returns torch.optim's dense layout (a post hook replaces the
  packed entries of the returned dict; ``optimizer.state`` itself stays packed), so checkpoints
  are interchangeable with masked dense training; ``load_state_dict`` packs dense state again
  (a post hook), and a state that is still dense at a sparse step is packed there;
* before torch.optim's own dense update runs for such a weight (its layer took the dense path,
  it was restored, the group asks for an update we do not replace), the state is unpacked into
  torch.optim's layout in ``optimizer.state[param]``;
* :func:`dense_state` returns a dense copy of one parameter's state, :func:`unpack_state_`
  turns a whole optimizer's state back into torch.optim's layout.

When the mask changes (RigL/SET/GMP), the packed state follows at the next sparse step: entries
kept under both masks keep their state, grown ones start at zero, dropped ones lose theirs,
as ``set_mask`` does to dense state (which also zeroes the changed positions of packed state
at once, through ``masking.enforce.STATE_ZEROERS``).
"""

from __future__ import annotations

import torch

from sparsetorch.kernels.cpu import Packed

PACKED = "sparsetorch_packed"  # optimizer.state[param] key: the Packed the tensors follow
MOMENTS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer")
_HOOKED = "_sparsetorch_packed_hooks"  # optimizer attribute: the state_dict hooks are in


def is_packed(state: dict) -> bool:
    return isinstance(state.get(PACKED), Packed)


def _moments(state: dict):
    for name in MOMENTS:
        value = state.get(name)
        if isinstance(value, torch.Tensor):
            yield name, value


def pack_(state: dict, param: torch.Tensor, packed: Packed, ops) -> bool:
    """Gather dense torch.optim-layout moments at ``packed``'s kept positions (in place in
    ``state``); False (nothing changed) when a moment is not shaped and typed like ``param``."""
    found = list(_moments(state))
    if any(t.shape != param.shape or t.dtype != param.dtype or t.is_sparse for _, t in found):
        return False
    for name, t in found:
        state[name] = ops.gather(t.detach().contiguous(), packed.rowptr, packed.cols)
    state[PACKED] = packed
    return True


def _dense(t: torch.Tensor, param: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(param.shape, dtype=t.dtype, device=t.device)
    out.view(-1).index_copy_(0, flat, t)
    return out


def dense_copy(state: dict, param: torch.Tensor) -> dict:
    """``state`` in torch.optim's layout (new dict; packed moments scattered into zeros)."""
    if not is_packed(state):
        return dict(state)
    flat = state[PACKED].flat()
    out = {k: v for k, v in state.items() if k != PACKED}
    for name, t in _moments(state):
        out[name] = _dense(t, param, flat)
    return out


def unpack_(state: dict, param: torch.Tensor) -> None:
    """Turn packed ``state`` into torch.optim's layout in place (no-op when not packed)."""
    if is_packed(state):
        dense = dense_copy(state, param)
        state.clear()
        state.update(dense)


def remap_(state: dict, new: Packed) -> None:
    """Re-order packed ``state`` to ``new``'s kept entries: entries kept in both keep their
    values, new ones start at zero, dropped ones are forgotten. O(kept log kept)."""
    old = state[PACKED]
    if old is new:
        return
    if not (torch.equal(old.rowptr, new.rowptr) and torch.equal(old.cols, new.cols)):
        old_flat, new_flat = old.flat(), new.flat()  # both ascending (CSR order)
        at = torch.searchsorted(old_flat, new_flat).clamp_(max=max(0, old_flat.numel() - 1))
        hit = old_flat[at] == new_flat if old_flat.numel() else new_flat < 0
        src = at[hit]
        for name, t in list(_moments(state)):
            out = torch.zeros(new.nnz, dtype=t.dtype, device=t.device)
            out[hit] = t[src]
            state[name] = out
    state[PACKED] = new


def zero_packed_at_(state: dict, param: torch.Tensor, where: torch.Tensor) -> None:
    """Zero the packed moments at the positions where the bool ``where`` (shaped like
    ``param``) is True (``set_mask``'s changed positions)."""
    if is_packed(state):
        hit = where.reshape(-1)[state[PACKED].flat()]  # (nnz,)
        for _, t in _moments(state):
            t.masked_fill_(hit, 0)


def dense_state(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> dict:
    """``optimizer.state[param]`` in torch.optim's layout: a copy with dense moments when it is
    packed, else a shallow copy (what ``optimizer.state_dict()`` holds for ``param``)."""
    return dense_copy(optimizer.state.get(param, {}), param)


def unpack_state_(optimizer: torch.optim.Optimizer) -> None:
    """Turn every packed state of ``optimizer`` into torch.optim's dense layout, in place (the
    next sparse step packs it again)."""
    for param, state in optimizer.state.items():
        if isinstance(param, torch.Tensor):
            unpack_(state, param)


def _state_dict_post_hook(optimizer: torch.optim.Optimizer, state_dict: dict) -> dict:
    states = state_dict["state"]
    for saved, group in zip(state_dict["param_groups"], optimizer.param_groups):
        for index, param in zip(saved["params"], group["params"]):
            entry = states.get(index)
            if entry is not None and is_packed(entry):
                states[index] = dense_copy(entry, param)  # a new dict: optimizer.state stays
    return state_dict


def _load_state_dict_post_hook(optimizer: torch.optim.Optimizer) -> None:
    from sparsetorch.accelerate.optim import pack_loaded_

    pack_loaded_(optimizer)


def hook(optimizer: torch.optim.Optimizer) -> None:
    """Register the state_dict hooks on ``optimizer`` (once; again after a copy or pickle,
    which drop an optimizer's hooks)."""
    if optimizer.__dict__.get(_HOOKED):  # (__getstate__ leaves attributes and hooks out)
        return
    optimizer.register_state_dict_post_hook(_state_dict_post_hook)
    optimizer.register_load_state_dict_post_hook(_load_state_dict_post_hook)
    optimizer.__dict__[_HOOKED] = True


__all__ = ["PACKED", "dense_state", "unpack_state_"]
