"""sparsetorch: sparse neural networks for PyTorch.

Public names are resolved lazily so that ``import sparsetorch`` (and the CLI) stay fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> "module:attribute" (attribute None = the module itself)
_LAZY: dict[str, str] = {
    # metrics and report
    "sparsity": "sparsetorch.metrics:sparsity",
    "density": "sparsetorch.metrics:density",
    "report": "sparsetorch.report:report",
    # masks and pruning
    "masks": "sparsetorch.masks:",
    "apply_masks": "sparsetorch.masks:apply_masks",
    "remove_masks": "sparsetorch.masks:remove_masks",
    "prune": "sparsetorch.prune:prune",
    # algorithms
    "GMP": "sparsetorch.algorithms.during:GMP",
    "SET": "sparsetorch.algorithms.during:SET",
    "RigL": "sparsetorch.algorithms.during:RigL",
    "lottery": "sparsetorch.algorithms.across_runs:",
    # subpackages
    "formats": "sparsetorch.formats:",
    "attention": "sparsetorch.attention:",
    "data": "sparsetorch.data:",
    "distributed": "sparsetorch.distributed:",
    "models": "sparsetorch.models:",
    # deployment and checkpoints
    "sparsify_": "sparsetorch.deploy:sparsify_",
    "accelerate_": "sparsetorch.accelerate:accelerate_",
    "save": "sparsetorch.checkpoint:save",
    "load": "sparsetorch.checkpoint:load",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'sparsetorch' has no attribute {name!r}")
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    value = getattr(module, attr) if attr else module
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
