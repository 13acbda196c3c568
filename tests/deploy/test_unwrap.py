"""``unwrap_dense_``: SparseLinear layers whose choices are all dense become plain nn.Linear
layers wrapping the dense path's tensors (same outputs bit for bit, same state dict); layers
with a sparse choice or never measured are kept (CPU, float32)."""

import pytest
import torch
from torch import nn

from sparsetorch.deploy import Dispatcher, SparseLinear, unwrap_dense_


def _dispatcher(winner: str) -> Dispatcher:
    """Path ``winner`` 'measures' fastest: the choice is forced, nothing is timed."""
    return Dispatcher(
        timer=lambda fn: 0.5 if fn.__defaults__[0].name == winner else 1.0, cache_file=None
    )


def _sparse(n_in: int, n_out: int, winner: str = "dense", bias: bool = True, seed: int = 0):
    torch.manual_seed(seed)
    linear = nn.Linear(n_in, n_out, bias=bias)
    with torch.no_grad():
        linear.weight[:, ::2] = 0  # half pruned
    return SparseLinear(linear, ["dense", "csr"], _dispatcher(winner))


class Net(nn.Module):
    def __init__(self, bias: bool = True) -> None:
        super().__init__()
        self.body = nn.Sequential(_sparse(8, 16, bias=bias), nn.ReLU(), _sparse(16, 16, bias=bias))
        self.heads = nn.ModuleDict({"out": _sparse(16, 4, bias=bias, seed=1)})

    def forward(self, x):
        return self.heads["out"](self.body(x))


def _tuned(bias: bool = True) -> tuple[Net, list[torch.Tensor]]:
    """Every layer chose dense for M = 1, 3, 8 (3-D input: 2 x 4 rows); the inputs."""
    model = Net(bias)
    inputs = [torch.randn(1, 8), torch.randn(3, 8), torch.randn(2, 4, 8)]
    with torch.no_grad():
        for x in inputs:
            model(x)  # measures: dense wins
    return model, inputs


def test_only_layers_whose_every_choice_is_dense_are_unwrapped():
    model = Net()
    model.body[0].tune([1, 8])  # dense for both buckets
    model.body[2] = _sparse(16, 16, winner="csr")
    model.body[2].tune([1])
    model.body[2].choices[8] = "dense"  # one bucket sparse, one dense: kept
    assert model.body[2].choices == {1: "csr", 8: "dense"}
    never = model.heads["out"]  # two paths, no choices: kept
    assert unwrap_dense_(model) == ["body.0"]
    assert type(model.body[0]) is nn.Linear
    assert isinstance(model.body[2], SparseLinear)
    assert model.heads["out"] is never
    assert unwrap_dense_(model) == []  # nothing left to unwrap


@pytest.mark.parametrize("bias", [True, False])
def test_all_dense_model_is_unwrapped_in_model_order_with_bitwise_equal_outputs(bias):
    model, inputs = _tuned(bias)
    with torch.no_grad():
        before = [model(x) for x in inputs]
    assert unwrap_dense_(model) == ["body.0", "body.2", "heads.out"]
    assert not any(isinstance(m, SparseLinear) for m in model.modules())
    with torch.no_grad():
        after = [model(x) for x in inputs]
    for a, b in zip(before, after, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("bias", [True, False])
def test_parameters_share_the_dense_paths_storage(bias):
    model, _ = _tuned(bias)
    layer = model.body[2]
    dense = layer.paths["dense"]
    unwrap_dense_(model)
    linear = model.body[2]
    assert (linear.in_features, linear.out_features) == (16, 16)
    assert isinstance(linear.weight, nn.Parameter) and not linear.weight.requires_grad
    assert linear.weight.data_ptr() == dense.weight.data_ptr()
    assert (linear.weight.dtype, linear.weight.device) == (torch.float32, torch.device("cpu"))
    if bias:
        assert isinstance(linear.bias, nn.Parameter) and not linear.bias.requires_grad
        assert linear.bias.data_ptr() == layer.bias.data_ptr()
    else:
        assert linear.bias is None and "bias" not in dict(linear.named_parameters())


@pytest.mark.parametrize("bias", [True, False])
def test_state_dict_keys_and_values_are_unchanged(bias):
    model, _ = _tuned(bias)
    before = model.state_dict()
    unwrap_dense_(model)
    after = model.state_dict()
    assert list(after) == list(before)
    names = ["body.0", "body.2", "heads.out"]
    assert list(after) == [f"{n}.{p}" for n in names for p in ["weight", "bias"][: 1 + bias]]
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    Net(bias).load_state_dict(after)  # still loads into the sparsified model


def test_nested_containers_and_single_dense_path():
    only_dense = SparseLinear(nn.Linear(4, 4), ["dense"], _dispatcher("dense"))
    only_csr = SparseLinear(nn.Linear(4, 4), ["csr"], _dispatcher("csr"))
    inner = nn.Module()
    inner.seq = nn.Sequential(nn.Identity(), only_dense)
    model = nn.ModuleDict({"a": inner, "b": nn.ModuleList([only_csr])})
    # never called: a lone dense path qualifies, a lone sparse path does not
    assert unwrap_dense_(model) == ["a.seq.1"]
    assert type(model["a"].seq[1]) is nn.Linear and model["b"][0] is only_csr


def test_a_shared_layer_becomes_one_linear_everywhere():
    layer = _sparse(4, 4)
    layer.tune([2])
    inner = nn.Sequential(layer)
    model = nn.Sequential(layer, inner, inner)  # every position is listed
    assert unwrap_dense_(model) == ["0", "1.0", "2.0"]
    assert type(model[0]) is nn.Linear and model[1][0] is model[0] and model[2] is inner


def test_a_sparse_linear_itself_is_refused():
    layer = _sparse(4, 4)
    layer.tune([1])
    with pytest.raises(ValueError, match="its parent"):
        unwrap_dense_(layer)
