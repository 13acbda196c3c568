"""``mlp`` (sized by the data) and ``module:callable`` (your own nn.Module)."""

import sys
import textwrap

import pytest
import torch
from torch import nn

from sparsetorch.models import build, check_name
from sparsetorch.models.mlp import parse_hidden

USER_MODULE = """
import torch
from torch import nn

CALLS = []


class Net(nn.Module):
    def __init__(self, input_shape, num_classes, width=8):
        super().__init__()
        CALLS.append((tuple(input_shape), num_classes, width))
        self.fc = nn.Linear(int(torch.tensor(input_shape).prod()), width)
        self.out = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.out(torch.relu(self.fc(x.flatten(1))))


def small(depth=1):  # takes neither input_shape nor num_classes
    return nn.Sequential(nn.Flatten(), *[nn.Linear(12, 12) for _ in range(depth)], nn.Linear(12, 3))


def anything(**kwargs):
    return sorted(kwargs)


class Holder:
    @staticmethod
    def build(input_shape, num_classes):
        return nn.Linear(input_shape[-1], num_classes)


NOT_CALLABLE = 3
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    name = "sparsetorch_test_user_models"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, name, raising=False)
    yield name
    sys.modules.pop(name, None)


def test_mlp_layer_sizes_come_from_the_data_and_the_hidden_option():
    model = build("mlp", input_shape=(1, 28, 28), num_classes=10)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 300), (300, 100), (100, 10)]
    model = build(
        "mlp", input_shape=(3, 4), num_classes=5, hidden="16", activation="gelu", dropout=0.5
    )
    assert [type(m).__name__ for m in model.layers] == ["Linear", "GELU", "Dropout", "Linear"]
    assert model.layers[0].in_features == 12 and model(torch.randn(2, 3, 4)).shape == (2, 5)
    linear = build("mlp", input_shape=(6,), num_classes=2, hidden="")
    assert len(linear.layers) == 1  # a linear classifier


def test_mlp_forward_equals_the_layers_by_hand():
    model = build("mlp", input_shape=(2, 3), num_classes=4, hidden=[5])
    x = torch.randn(7, 2, 3)
    a, b = model.layers[0], model.layers[2]
    expected = torch.relu(x.flatten(1) @ a.weight.T + a.bias) @ b.weight.T + b.bias
    assert torch.allclose(model(x), expected, atol=1e-6)


@pytest.mark.parametrize(
    ("hidden", "expected"),
    [("300,100", (300, 100)), (" 64 , 32 ", (64, 32)), (7, (7,)), ([3, 2], (3, 2)), ("", ())],
)
def test_hidden_forms(hidden, expected):
    assert parse_hidden(hidden) == expected


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"hidden": "300,x"}, ValueError, "hidden must be widths"),
        ({"hidden": 0}, ValueError, "hidden widths must be >= 1"),
        ({"hidden": 1.5}, TypeError, "hidden must be widths"),
        ({"activation": "swish"}, ValueError, "activation must be one of relu"),
        ({"dropout": 1.0}, ValueError, "dropout must be in \\[0, 1\\)"),
        ({"depth": 3}, TypeError, "depth"),
    ],
)
def test_mlp_options_are_checked(options, error, match):
    with pytest.raises(error, match=match):
        build("mlp", input_shape=(4,), num_classes=2, **options)


def test_mlp_refuses_token_ids():
    with pytest.raises(TypeError, match="mlp takes float inputs"):
        build("mlp", input_shape=(4,), num_classes=2)(torch.zeros(1, 4, dtype=torch.long))


def test_a_module_reference_gets_the_data_shape_and_the_options(user_module):
    model = build(f"{user_module}:Net", input_shape=(2, 5), num_classes=3, width=6)
    calls = sys.modules[user_module].CALLS
    assert calls == [((2, 5), 3, 6)] and model.fc.in_features == 10 and model.out.out_features == 3
    small = build(f"{user_module}:small", input_shape=(12,), num_classes=3, depth=2)
    assert sum(isinstance(m, nn.Linear) for m in small) == 3
    nested = build(f"{user_module}:Holder.build", input_shape=(7,), num_classes=2)
    assert (nested.in_features, nested.out_features) == (7, 2)


def test_a_file_reference(tmp_path):
    path = tmp_path / "elsewhere" / "my_net.py"
    path.parent.mkdir()
    path.write_text(textwrap.dedent(USER_MODULE))
    model = build(f"{path}:Net", input_shape=(4,), num_classes=2)
    assert model.fc.in_features == 4


@pytest.mark.parametrize(
    ("reference", "error", "match"),
    [
        ("no_such_module_xyz:Net", ValueError, "cannot import module 'no_such_module_xyz'"),
        ("{m}:Missing", ValueError, "has no attribute 'Missing'"),
        ("{m}:NOT_CALLABLE", TypeError, "not a callable"),
        ("{m}:anything", TypeError, "returned a list, not an nn.Module"),
        (":Net", ValueError, "module:callable"),
        ("{m}:1bad", ValueError, "module:callable"),
        ("missing_dir/none.py:Net", FileNotFoundError, "does not exist"),
    ],
)
def test_bad_references_are_one_clear_error(user_module, reference, error, match):
    with pytest.raises(error, match=match):
        build(reference.format(m=user_module), input_shape=(4,), num_classes=2)


def test_an_import_error_inside_your_module_is_not_hidden(tmp_path, monkeypatch):
    (tmp_path / "sparsetorch_test_broken.py").write_text("import sparsetorch_no_such_dependency\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModuleNotFoundError, match="sparsetorch_no_such_dependency"):
        check_name("sparsetorch_test_broken:Net")
    assert str(tmp_path) not in sys.path  # the current directory was only borrowed


def test_unknown_model_names_list_the_forms():
    with pytest.raises(ValueError, match=r"known: .*mlp.*module:callable"):
        check_name("mpl")
