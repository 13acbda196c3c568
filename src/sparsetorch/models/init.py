"""Initialisations as the papers use them.

* Glorot (Glorot & Bengio 2010), Gaussian: LeNet-300-100 and Conv-2/4/6, as in Frankle &
  Carbin 2019 (Table 1, "Gaussian Glorot"). Biases start at zero.
* Kaiming (He et al. 2015), Gaussian, fan-in, ReLU gain: ResNets. Biases start at zero;
  batch-norm scales at one and shifts at zero (PyTorch's defaults).

Both draw from the global RNG: seed it (or fork it) around model construction.
"""

from __future__ import annotations

from torch import nn

_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def glorot_(model: nn.Module) -> nn.Module:
    """Gaussian Glorot weights and zero biases for every Linear/Conv layer, in place."""
    for module in model.modules():
        if isinstance(module, _WEIGHTED):
            nn.init.xavier_normal_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


def kaiming_(model: nn.Module) -> nn.Module:
    """Gaussian Kaiming (fan-in, ReLU) weights and zero biases for Linear/Conv layers; unit
    scale and zero shift for batch norms, in place."""
    for module in model.modules():
        if isinstance(module, _WEIGHTED):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return model
