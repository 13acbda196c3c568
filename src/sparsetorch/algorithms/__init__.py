"""Sparsity algorithms: at_init (SNIP, GraSP, SynFlow, random), during (GMP, SET, RigL),
across_runs (lottery tickets / IMP).

``METHODS`` maps a ``--method`` name to a factory ``(hparams) -> TrainHook`` that the runner
plugs into its training loop (see sparsetorch.experiments.hooks). Algorithm modules register
themselves on import; ``load_methods()`` imports them all.
"""

from __future__ import annotations

import importlib
import pkgutil

from sparsetorch._registry import Registry

METHODS: Registry = Registry("method")


def load_methods() -> Registry:
    """Import every algorithm module so that its methods are registered."""
    for info in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
        importlib.import_module(info.name)
    return METHODS


__all__ = ["METHODS", "load_methods"]
