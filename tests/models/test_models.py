import math

import pytest
import torch
from torch import nn

from sparsetorch.models import MODELS, build


def linear_params(fan_in: int, fan_out: int, bias: bool = True) -> int:
    return fan_in * fan_out + (fan_out if bias else 0)


def conv_params(c_in: int, c_out: int, k: int, bias: bool = True) -> int:
    return c_in * c_out * k * k + (c_out if bias else 0)


def convn_params(stages: int, c: int, h: int, w: int, classes: int) -> int:
    total, channels = 0, c
    for out in (64, 128, 256)[:stages]:
        total += conv_params(channels, out, 3) + conv_params(out, out, 3)
        channels = out
    flat = channels * (h // 2**stages) * (w // 2**stages)
    return total + linear_params(flat, 256) + linear_params(256, 256) + linear_params(256, classes)


def resnet_params(depth: int, c: int, classes: int, width: int = 16) -> int:
    n = (depth - 2) // 6
    total = conv_params(c, width, 3, bias=False) + 2 * width  # stem conv + bn
    channels = width
    for stage in range(3):
        out = width * 2**stage
        for _ in range(n):
            total += conv_params(channels, out, 3, bias=False) + 2 * out
            total += conv_params(out, out, 3, bias=False) + 2 * out
            if channels != out:
                total += conv_params(channels, out, 1, bias=False) + 2 * out
            channels = out
    return total + linear_params(channels, classes)


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_lenet300_has_the_papers_266610_parameters():
    model = build("lenet300")
    assert count(model) == 266_610
    assert [tuple(m.weight.shape) for m in model.modules() if isinstance(m, nn.Linear)] == [
        (300, 784),
        (100, 300),
        (10, 100),
    ]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("lenet300", 266_610),
        ("conv2", convn_params(1, 1, 28, 28, 10)),
        ("conv4", convn_params(2, 1, 28, 28, 10)),
        ("conv6", convn_params(3, 1, 28, 28, 10)),
        ("resnet20", resnet_params(20, 1, 10)),
    ],
)
def test_forward_shape_and_parameter_count_on_fashion_mnist_shape(name, expected):
    model = build(name)
    assert count(model) == expected
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "lenet300",
            linear_params(3 * 32 * 32, 300) + linear_params(300, 100) + linear_params(100, 100),
        ),
        ("conv4", convn_params(2, 3, 32, 32, 100)),
        ("conv6", convn_params(3, 3, 32, 32, 100)),
        ("resnet32", resnet_params(32, 3, 100)),
    ],
)
def test_models_adapt_to_input_shape_and_classes(name, expected):
    model = build(name, input_shape=(3, 32, 32), num_classes=100)
    assert count(model) == expected
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 100)


def test_resnet20_layout_is_three_stages_of_three_blocks():
    model = build("resnet20")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 1 + 3 * 3 * 2  # stem + 18 convs: 19 convs + fc = 20 layers
    assert [c.out_channels for c in convs[1:]] == [16] * 6 + [32] * 6 + [64] * 6
    x = torch.randn(2, 1, 28, 28)
    features = model.blocks(torch.relu(model.bn(model.conv(x))))
    assert features.shape == (2, 64, 7, 7)


def _std(t: torch.Tensor) -> float:
    return t.double().std().item()


def test_glorot_init_for_lenet_and_convnets():
    torch.manual_seed(0)
    model = build("lenet300")
    # Gaussian Glorot: std = sqrt(2 / (fan_in + fan_out)); 235,200 samples -> within 1%
    assert _std(model.fc1.weight) == pytest.approx(math.sqrt(2 / (784 + 300)), rel=0.01)
    assert model.fc1.weight.mean().abs() < 1e-3
    assert all(torch.count_nonzero(m.bias) == 0 for m in model.modules() if hasattr(m, "bias"))
    conv = build("conv2").features[2]  # 64 -> 64, 3x3: fans 576 and 576
    assert _std(conv.weight) == pytest.approx(math.sqrt(2 / (576 + 576)), rel=0.02)


def test_kaiming_init_for_resnet():
    torch.manual_seed(0)
    model = build("resnet20")
    conv = model.blocks[8].conv2  # 64 -> 64, 3x3, fan_in 576
    assert _std(conv.weight) == pytest.approx(math.sqrt(2 / 576), rel=0.02)
    assert torch.equal(model.blocks[0].bn1.weight, torch.ones(16))
    assert torch.count_nonzero(model.fc.bias) == 0


def test_same_seed_same_weights_bitwise():
    def weights():
        torch.manual_seed(7)
        return build("conv4").state_dict()

    a, b = weights(), weights()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_registry_names_and_unknown_model():
    assert {"lenet300", "conv2", "conv4", "conv6", "resnet20", "transformer"} <= set(MODELS.names())
    with pytest.raises(ValueError, match=r"unknown model 'vgg19'; known: .*lenet300"):
        build("vgg19")


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("conv4", {"input_shape": (784,)}, "input_shape for conv4 must be"),
        ("conv6", {"input_shape": (1, 7, 7)}, "too small"),
        ("resnet21", {}, "depth must be 6n\\+2"),
        ("resnet20", {"input_shape": (28, 28)}, "input_shape for resnet20"),
        ("resnet20", {"width": 0}, "width must be >= 1"),
        ("transformer", {"input_shape": (1, 28, 28)}, "use a text dataset"),
    ],
)
def test_bad_shapes_and_options_raise(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build(name, **kwargs)


def test_transformer_factory_maps_vocab_and_context():
    pytest.importorskip("sparsetorch.models.transformer")
    model = build("transformer", input_shape=(16,), num_classes=256, d_model=32, n_layers=1)
    tokens = torch.randint(0, 256, (2, 16))
    assert model(tokens).shape == (2, 16, 256)
