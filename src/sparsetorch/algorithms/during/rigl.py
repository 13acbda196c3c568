"""RigL: Evci, Gale, Menick, Castro & Elsen, "Rigging the Lottery: Making All Tickets Winners",
ICML 2020 (arXiv:1911.11134), Algorithm 1:

    sparse random start, ERK layer densities
    for t = 1 .. T:
        if t mod delta_T == 0 and t < T_end:
            for each layer:
                k = alpha/2 (1 + cos(pi t / T_end)) * (active connections)
                drop the k active connections of smallest |w|
                grow  the k inactive connections of largest |dL/dw| (the dense gradient)
                new connections start at 0 (and their momentum/Adam moments at 0)
        else:
            theta <- theta - lr * grad   (the optimizer step)

As in the paper and its official code, an update iteration replaces that iteration's optimizer
step; the grow candidates include the connections just dropped (see ``topology.py``). The
dense gradient is ``param.grad`` between ``backward()`` and the optimizer step: the masks leave
the forward pass dense, so every backward pass already computes it (on CPU/GPU dense kernels
the cost is that of dense training; the paper's FLOP count assumes a sparse kernel, paying the
dense gradient only on update iterations). Layers on the sparse CPU kernels
(``sparsetorch.accelerate_``) do pay it only then: RigL asks for it through
``needs_dense_gradient`` before each update iteration's forward.
"""

from __future__ import annotations

import torch

from sparsetorch.algorithms.config import RigLConfig
from sparsetorch.algorithms.during.drop_and_grow import DropAndGrow


class RigL(DropAndGrow):
    """``rigl = RigL(model, optimizer, total_steps=T, sparsity=0.9, distribution="erk",
    delta_t=100, alpha=0.3, t_end=None (75% of T), schedule="cosine", pattern="unstructured",
    seed=0)`` (settings as keywords or ``config=RigLConfig(...)``); call ``rigl.step()`` after
    ``loss.backward()`` (it steps the optimizer).

    If every prunable weight already has a mask (a resumed run, or a chosen start such as a
    SNIP mask) that topology is the start; otherwise a random one at ``sparsity`` spread by
    ``distribution``. Under N:M every group keeps its count (drop anywhere, regrow inside the
    group); under block/channel patterns whole units move, scored by their summed |w| / |g|.
    """

    method = "rigl"
    Config = RigLConfig

    def grow_scores(self, param: torch.Tensor) -> torch.Tensor:
        if param.grad is None:
            raise RuntimeError(
                "RigL grows on the dense gradient: call rigl.step() after loss.backward() "
                "(param.grad is None)"
            )
        grad = param.grad.detach()
        if grad.layout != torch.strided:  # nn.Embedding(sparse=True): rows of the batch
            grad = grad.to_dense()
        return grad.abs()

    def needs_dense_gradient(self, t: int) -> bool:
        return getattr(self, "schedule", None) is not None and self.is_update_step(t)

    def before_optimizer_step(self, t: int) -> bool:
        if not self.is_update_step(t):
            return False
        sparse = [full for full, m, _ in self.targets if m.__dict__.get("last_grad_dense") is False]
        if sparse:
            raise RuntimeError(
                f"RigL grows on the dense gradient, but the sparse-kernel layers {sparse[:3]} "
                f"computed iteration {t}'s gradient at kept positions only: keep rigl.t equal to "
                "the iteration (rigl.step() does) so that it asks for the dense gradient in time"
            )
        self.update_topology(t)
        return True  # the update replaces this iteration's optimizer step
