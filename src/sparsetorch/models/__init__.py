"""Paper models, by name: ``build("lenet300")``, ``build("conv4", input_shape=(1, 28, 28),
num_classes=10)``.

Every factory takes ``input_shape`` (one example's shape, without the batch) and
``num_classes``, so the runner builds any model for any dataset of the right kind; extra keyword
arguments are model options (e.g. ``d_model`` for the transformer).

=============  =========================================================  ============
name           model                                                      init
=============  =========================================================  ============
lenet300       LeNet-300-100 MLP (Frankle & Carbin 2019)                  Glorot
conv2/4/6      Conv-2/4/6 VGG-like (Frankle & Carbin 2019)                Glorot
resnet20       ResNet-20 (He et al. 2016; any depth 6n+2: resnet32, ...)  Kaiming
transformer    small causal char-level Transformer (models/transformer)   its own
mlp            fully connected, sized by the data (``hidden=300,100``)    PyTorch's
=============  =========================================================  ============

``build("module:callable", ...)`` builds your own ``nn.Module`` (``models/reference``): it
imports and runs that code.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from sparsetorch._registry import Registry
from sparsetorch.models.convnet import ConvNet
from sparsetorch.models.lenet import LeNet300100
from sparsetorch.models.mlp import MLP
from sparsetorch.models.resnet import ResNet

MODELS: Registry[nn.Module] = Registry("model")
Shape = tuple[int, ...]


@MODELS.register("lenet300")
def _lenet300(input_shape: Shape = (1, 28, 28), num_classes: int = 10) -> nn.Module:
    return LeNet300100(tuple(input_shape), num_classes)


def _convnet(stages: int):
    def factory(input_shape: Shape = (1, 28, 28), num_classes: int = 10) -> nn.Module:
        return ConvNet(stages, tuple(input_shape), num_classes)

    return factory


for _stages in (1, 2, 3):
    MODELS.register(f"conv{2 * _stages}")(_convnet(_stages))


@MODELS.register_pattern(r"resnet(\d+)", "resnet20")
def _resnet(
    depth: int, input_shape: Shape = (1, 28, 28), num_classes: int = 10, width: int = 16
) -> nn.Module:
    return ResNet(depth, tuple(input_shape), num_classes, width)


@MODELS.register("transformer")
def _transformer(input_shape: Shape = (128,), num_classes: int = 256, **options: Any) -> nn.Module:
    """``input_shape`` is ``(context,)`` and ``num_classes`` the vocabulary size."""
    if len(input_shape) != 1:
        raise ValueError(
            f"input_shape for transformer must be (context,) token sequences, got "
            f"{tuple(input_shape)}: use a text dataset"
        )
    from sparsetorch.models.transformer import CausalTransformer  # written separately

    return CausalTransformer(vocab_size=num_classes, context=input_shape[0], **options)


@MODELS.register("mlp")
def _mlp(input_shape: Shape = (1, 28, 28), num_classes: int = 10, **options: Any) -> nn.Module:
    return MLP(tuple(input_shape), num_classes, **options)


REFERENCE_FORM = "module:callable"


def known_names() -> list[str]:
    return [*MODELS.names(), REFERENCE_FORM]


def check_name(name: str) -> None:
    """A ValueError for an unknown model name (listing the known ones); a reference is
    resolved, which imports its module."""
    from sparsetorch.models import reference

    if reference.is_reference(name):
        reference.resolve(name)
    elif name.strip().lower() not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(known_names())}")


def build(name: str, **kwargs: Any) -> nn.Module:
    """Build a model by name, or your own by ``"module:callable"`` (unknown names raise
    ValueError listing the known ones)."""
    from sparsetorch.models import reference

    if isinstance(name, str) and reference.is_reference(name):
        return reference.build(name, **kwargs)
    return MODELS.build(name, **kwargs)


__all__ = ["MLP", "MODELS", "ConvNet", "LeNet300100", "ResNet", "build", "check_name"]
