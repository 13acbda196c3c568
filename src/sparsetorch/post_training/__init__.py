"""One-shot post-training pruning from calibration data: ``st.oneshot(model, "wanda",
calibration=batches, sparsity=0.5)`` or ``pattern="2:4"``.

===============  =========================================================  ===============
``"magnitude"``  keep the largest |W| per layer (per N:M group); data-free  :class:`Magnitude`
``"wanda"``      |W_ij| * ||X_j||, compared per output row (Sun et al.)     :class:`Wanda`
``"sparsegpt"``  OBS mask selection + weight reconstruction (Frantar &      :class:`SparseGPT`
                 Alistarh)
===============  =========================================================  ===============

The model is processed one block at a time (``pipeline``): how every block is called is
recorded on the calibration batches (``capture``), each block's Linear layers (``layers``) are
pruned from statistics of their inputs (``statistics``), and the pruned block's outputs feed
the next block. Blocks are found generically (``blocks``); with ``offload`` only the block being
processed is on the GPU. Add a method by subclassing :class:`OneShotMethod` and registering it:
``METHODS.register("mine")(Mine)``.

``st.oneshot`` is :func:`oneshot`; the methods are ``sparsetorch.post_training.Wanda`` etc.
"""

from __future__ import annotations

from sparsetorch._registry import Registry
from sparsetorch.post_training.blocks import find_blocks, resolve_blocks
from sparsetorch.post_training.magnitude import Magnitude
from sparsetorch.post_training.method import OneShotMethod, Target
from sparsetorch.post_training.pipeline import make_target, oneshot
from sparsetorch.post_training.sparsegpt import SparseGPT, sparsegpt
from sparsetorch.post_training.wanda import Wanda

METHODS: Registry[OneShotMethod] = Registry("one-shot method")
METHODS.register("magnitude")(Magnitude)
METHODS.register("wanda")(Wanda)
METHODS.register("sparsegpt")(SparseGPT)


__all__ = [
    "METHODS",
    "Magnitude",
    "OneShotMethod",
    "SparseGPT",
    "Target",
    "Wanda",
    "find_blocks",
    "make_target",
    "oneshot",
    "resolve_blocks",
    "sparsegpt",
]
