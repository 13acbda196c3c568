"""During-training sparsity: GMP (gradual magnitude pruning, Zhu & Gupta 2017) and dynamic
sparse training, SET (Mocanu et al. 2018) and RigL (Evci et al. 2020).

Each is a small class over the four axes (pattern, distribution, schedule, the one top-k) that
plugs into any training loop (``algo.step()`` after ``loss.backward()``) and, through its
config dataclass, into ``sparsetorch train --method gmp|set|rigl``.
"""

from __future__ import annotations

from sparsetorch.algorithms.config import GMPConfig, RigLConfig, SETConfig
from sparsetorch.algorithms.during.base import DynamicSparsity
from sparsetorch.algorithms.during.churn import plot_churn
from sparsetorch.algorithms.during.gmp import GMP
from sparsetorch.algorithms.during.rigl import RigL
from sparsetorch.algorithms.during.sparse_evolutionary import SET

__all__ = [
    "GMP",
    "SET",
    "DynamicSparsity",
    "GMPConfig",
    "RigL",
    "RigLConfig",
    "SETConfig",
    "plot_churn",
]
