"""sparsetorch: sparse neural networks for PyTorch.

Public names are plain functions, classes and subpackages. They are imported on first use so
that ``import sparsetorch`` (and the CLI) stay fast; the ``TYPE_CHECKING`` block below names the
same objects for type checkers and IDEs (``reveal_type(st.prune)`` is the function).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sparsetorch._lazy import lazy_names

__version__ = "0.1.0"

if TYPE_CHECKING:  # the same names as _LAZY, for type checkers (tests hold the two equal)
    from sparsetorch import attention as attention
    from sparsetorch import data as data
    from sparsetorch import distributed as distributed
    from sparsetorch import formats as formats
    from sparsetorch import lottery as lottery
    from sparsetorch import models as models
    from sparsetorch.accelerate import accelerate_ as accelerate_
    from sparsetorch.algorithms.at_init import GraSPConfig as GraSPConfig
    from sparsetorch.algorithms.at_init import RandomConfig as RandomConfig
    from sparsetorch.algorithms.at_init import SNIPConfig as SNIPConfig
    from sparsetorch.algorithms.at_init import SynFlowConfig as SynFlowConfig
    from sparsetorch.algorithms.at_init import grasp as grasp
    from sparsetorch.algorithms.at_init import random_prune as random_prune
    from sparsetorch.algorithms.at_init import snip as snip
    from sparsetorch.algorithms.at_init import synflow as synflow
    from sparsetorch.algorithms.during import GMP as GMP
    from sparsetorch.algorithms.during import SET as SET
    from sparsetorch.algorithms.during import GMPConfig as GMPConfig
    from sparsetorch.algorithms.during import RigL as RigL
    from sparsetorch.algorithms.during import RigLConfig as RigLConfig
    from sparsetorch.algorithms.during import SETConfig as SETConfig
    from sparsetorch.checkpoint import load as load
    from sparsetorch.checkpoint import save as save
    from sparsetorch.deploy import sparsify_ as sparsify_
    from sparsetorch.masking import apply_masks as apply_masks
    from sparsetorch.masking import get_masks as masks
    from sparsetorch.masking import mask_gradients_ as mask_gradients_
    from sparsetorch.masking import masks_from_zeros as masks_from_zeros
    from sparsetorch.masking import reattach_masks as reattach_masks
    from sparsetorch.masking import register_prunable as register_prunable
    from sparsetorch.masking import remove_masks as remove_masks
    from sparsetorch.metrics import density as density
    from sparsetorch.metrics import sparsity as sparsity
    from sparsetorch.model_report import report as report
    from sparsetorch.post_training import oneshot as oneshot
    from sparsetorch.pruning import compute_masks as compute_masks
    from sparsetorch.pruning import prune as prune

# public name -> "module:attribute" (no attribute: the module itself)
_LAZY: dict[str, str] = {
    # metrics and report
    "sparsity": "sparsetorch.metrics:sparsity",
    "density": "sparsetorch.metrics:density",
    "report": "sparsetorch.model_report:report",
    # masks and pruning
    "masks": "sparsetorch.masking:get_masks",
    "apply_masks": "sparsetorch.masking:apply_masks",
    "remove_masks": "sparsetorch.masking:remove_masks",
    "mask_gradients_": "sparsetorch.masking:mask_gradients_",
    "masks_from_zeros": "sparsetorch.masking:masks_from_zeros",
    "reattach_masks": "sparsetorch.masking:reattach_masks",
    "register_prunable": "sparsetorch.masking:register_prunable",
    "prune": "sparsetorch.pruning:prune",
    "compute_masks": "sparsetorch.pruning:compute_masks",
    "oneshot": "sparsetorch.post_training:oneshot",
    # algorithms
    "snip": "sparsetorch.algorithms.at_init:snip",
    "grasp": "sparsetorch.algorithms.at_init:grasp",
    "synflow": "sparsetorch.algorithms.at_init:synflow",
    "random_prune": "sparsetorch.algorithms.at_init:random_prune",
    "GMP": "sparsetorch.algorithms.during:GMP",
    "SET": "sparsetorch.algorithms.during:SET",
    "RigL": "sparsetorch.algorithms.during:RigL",
    "GMPConfig": "sparsetorch.algorithms.during:GMPConfig",
    "SETConfig": "sparsetorch.algorithms.during:SETConfig",
    "RigLConfig": "sparsetorch.algorithms.during:RigLConfig",
    "SNIPConfig": "sparsetorch.algorithms.at_init:SNIPConfig",
    "GraSPConfig": "sparsetorch.algorithms.at_init:GraSPConfig",
    "SynFlowConfig": "sparsetorch.algorithms.at_init:SynFlowConfig",
    "RandomConfig": "sparsetorch.algorithms.at_init:RandomConfig",
    "lottery": "sparsetorch.lottery:",
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

__all__ = [
    "GMP",
    "SET",
    "GMPConfig",
    "GraSPConfig",
    "RandomConfig",
    "RigL",
    "RigLConfig",
    "SETConfig",
    "SNIPConfig",
    "SynFlowConfig",
    "__version__",
    "accelerate_",
    "apply_masks",
    "attention",
    "compute_masks",
    "data",
    "density",
    "distributed",
    "formats",
    "grasp",
    "load",
    "lottery",
    "mask_gradients_",
    "masks",
    "masks_from_zeros",
    "models",
    "oneshot",
    "prune",
    "random_prune",
    "reattach_masks",
    "register_prunable",
    "remove_masks",
    "report",
    "save",
    "snip",
    "sparsify_",
    "sparsity",
    "synflow",
]  # = ['__version__', *_LAZY] (tests hold them equal)

__getattr__, __dir__ = lazy_names(globals(), _LAZY)
