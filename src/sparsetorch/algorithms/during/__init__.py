"""During-training sparsity: GMP (gradual magnitude pruning, Zhu & Gupta 2017) and dynamic
sparse training, SET (Mocanu et al. 2018) and RigL (Evci et al. 2020).

Each is a small class over the four axes (pattern, distribution, schedule, the one top-k) that
plugs into any training loop (``algo.step()`` after ``loss.backward()``) and, as the methods
"gmp", "set" and "rigl" of ``sparsetorch.algorithms.METHODS``, into ``sparsetorch train``.
"""

from __future__ import annotations

from sparsetorch.algorithms.during import runner_hooks as _runner_hooks  # registers METHODS
from sparsetorch.algorithms.during.base import DynamicSparsity
from sparsetorch.algorithms.during.churn import plot_churn
from sparsetorch.algorithms.during.gmp import GMP
from sparsetorch.algorithms.during.rigl import RigL
from sparsetorch.algorithms.during.sparse_evolutionary import SET

del _runner_hooks

__all__ = ["GMP", "SET", "DynamicSparsity", "RigL", "plot_churn"]
