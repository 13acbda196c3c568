"""SET: Mocanu, Mocanu, Stone, Nguyen, Gibescu & Liotta, "Scalable training of artificial
neural networks with adaptive sparse connectivity inspired by network science", Nature
Communications 9, 2383 (2018).

    sparse random (Erdos-Renyi) start
    after each training period:
        drop the fraction zeta of active connections closest to zero (smallest |w|)
        grow as many new connections at random among the inactive ones

The paper drops zeta = 0.3 after every epoch with a constant fraction (``schedule="constant"``,
``delta_t`` = the steps of an epoch); by default the period, fraction and its decay are RigL's
(delta_t, alpha, cosine to T_end) so that SET and RigL are compared on the same schedule, as in
Evci et al. 2020 and its official code. New connections
start at zero with zeroed optimizer state (the official code's ``grow_init='zeros'``; the
paper draws them from the initial distribution). The update follows the optimizer step.
"""

from __future__ import annotations

import torch

from sparsetorch.algorithms.config import SETConfig
from sparsetorch.algorithms.during.drop_and_grow import DropAndGrow


class SET(DropAndGrow):
    """``SET(model, optimizer, total_steps=T, sparsity=0.9, distribution="erk", delta_t=100,
    alpha=0.3, t_end=None, schedule="cosine", pattern="unstructured", seed=0)`` (or
    ``config=SETConfig(...)``); call ``set_.step()`` after ``loss.backward()``. Random growth
    draws from the seeded generator: same seed, same topologies."""

    method = "set"
    Config = SETConfig

    def grow_scores(self, param: torch.Tensor) -> torch.Tensor:
        # uniform scores: a uniformly random choice among the candidates (drawn on the CPU
        # generator, so a seed gives the same topology on every device)
        return torch.rand(param.shape, generator=self.generator).to(param.device)

    def after_optimizer_step(self, t: int) -> None:
        if self.is_update_step(t):
            self.update_topology(t)
