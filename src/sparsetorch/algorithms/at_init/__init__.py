"""Static sparse training: choose the mask once, at initialisation, and keep it fixed.

Each method is a criterion (how weights are scored) + a pattern + a distribution + a one-shot
schedule (SynFlow: an exponential schedule of many small one-shot steps):

==========  =====================================================  ===================
method      scores                                                 function
==========  =====================================================  ===================
``snip``    |g * w| on data batches (Lee et al. 2019)              :func:`snip`
``grasp``   w * (H g) on data batches (Wang et al. 2020)           :func:`grasp`
``synflow`` |dR/dw * w|, data-free, iterative (Tanaka et al. 2020)  :func:`synflow`
``random``  uniform noise (baseline; with uniform or ERK layers)    :func:`random_prune`
==========  =====================================================  ===================

Programmatic use prunes a model in place::

    from sparsetorch.algorithms.at_init import snip
    snip(model, (x, y), sparsity=0.9)                 # global, unstructured
    snip(model, (x, y), sparsity=0.5, pattern="2:4")  # any pattern

Each has a config dataclass (:class:`SNIPConfig`, ...) whose fields are the runner's flags
(``sparsetorch train --method snip --sparsity 0.9 --batches 4``); the runner prunes with it in
``on_train_start`` (``sparsetorch.experiments.methods``).
"""

from sparsetorch.algorithms.at_init.base import empty_layers, prune_with_scores
from sparsetorch.algorithms.at_init.by_name import AT_INIT, prune_at_init
from sparsetorch.algorithms.at_init.grasp import grasp
from sparsetorch.algorithms.at_init.random_pruning import random_prune
from sparsetorch.algorithms.at_init.snip import snip
from sparsetorch.algorithms.at_init.synflow import exponential_densities, synflow
from sparsetorch.algorithms.config import GraSPConfig, RandomConfig, SNIPConfig, SynFlowConfig

__all__ = [
    "AT_INIT",
    "GraSPConfig",
    "RandomConfig",
    "SNIPConfig",
    "SynFlowConfig",
    "empty_layers",
    "exponential_densities",
    "grasp",
    "prune_at_init",
    "prune_with_scores",
    "random_prune",
    "snip",
    "synflow",
]
