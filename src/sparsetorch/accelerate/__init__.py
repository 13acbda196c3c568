"""Sparse training on the CPU: ``accelerate_(model)`` runs masked Linear layers through the
sparse kernels of ``sparsetorch.kernels.cpu`` (forward, both gradients and the optimizer step
over the kept entries only) while parameters, masks, state_dict keys and torch.optim
optimizers stay as they are. The optimizer state of an accelerated weight is kept packed
(``dense_state``/``unpack_state_`` give torch.optim's layout). docs/cpu_kernels.md has the
design and the measurements."""

from sparsetorch.accelerate.linear import AcceleratedLinear
from sparsetorch.accelerate.packed_state import dense_state, unpack_state_
from sparsetorch.accelerate.swap import AccelerateReport, accelerate_, restore_

__all__ = [
    "AccelerateReport",
    "AcceleratedLinear",
    "accelerate_",
    "dense_state",
    "restore_",
    "unpack_state_",
]
