"""Deployment: swap trained sparse weights for real sparse compute paths (``sparsify_``)."""

from sparsetorch.deploy.compute_paths import PATHS
from sparsetorch.deploy.dispatch import Dispatcher, m_bucket
from sparsetorch.deploy.graphed import graph_timer
from sparsetorch.deploy.sparse_linear import SparseLinear
from sparsetorch.deploy.sparsify import CONFIGS, SparsifyReport, sparsify_
from sparsetorch.deploy.unwrap import unwrap_dense_
from sparsetorch.deploy.verify import Verification, verify_

__all__ = [
    "CONFIGS",
    "PATHS",
    "Dispatcher",
    "SparseLinear",
    "SparsifyReport",
    "Verification",
    "graph_timer",
    "m_bucket",
    "sparsify_",
    "unwrap_dense_",
    "verify_",
]
