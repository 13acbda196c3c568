import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from sparsetorch.criteria import CRITERIA, Criterion, ElementwiseCriterion, get


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


NAMES = ["0.weight", "2.weight"]


def batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)


def test_registry():
    assert sorted(CRITERIA.names()) == [
        "gradient", "grasp", "magnitude", "random", "snip", "synflow", "taylor"
    ]  # fmt: skip
    with pytest.raises(ValueError, match="unknown criterion 'snipp'; known: gradient, grasp, magn"):
        get("snipp")
    with pytest.raises(TypeError):
        get(1.0)


def test_magnitude_is_abs_weight():
    model = mlp()
    s = get("magnitude").scores(model, NAMES)
    assert list(s) == NAMES
    assert torch.equal(s["0.weight"], model[0].weight.detach().abs())
    assert not s["0.weight"].requires_grad


def test_scores_dtype_float32_for_half_float64_kept():
    model = mlp().half()
    assert get("magnitude").scores(model, NAMES)["0.weight"].dtype == torch.float32
    model = mlp().double()
    assert get("magnitude").scores(model, NAMES)["0.weight"].dtype == torch.float64


def test_random_is_reproducible_from_generator():
    model = mlp()
    rnd = get("random")
    a = rnd.scores(model, NAMES, generator=torch.Generator().manual_seed(7))
    b = rnd.scores(model, NAMES, generator=torch.Generator().manual_seed(7))
    c = rnd.scores(model, NAMES, generator=torch.Generator().manual_seed(8))
    assert all(torch.equal(a[n], b[n]) for n in NAMES)
    assert not torch.equal(a["0.weight"], c["0.weight"])
    assert all(bool(((a[n] >= 0) & (a[n] < 1)).all()) for n in NAMES)
    # independent reference: the same draws in the same order
    g = torch.Generator().manual_seed(7)
    expected = torch.rand(5, 6, generator=g)
    assert torch.equal(a["0.weight"], expected)


def test_gradient_from_batch_matches_autograd_and_leaves_grad_alone():
    model = mlp()
    x, y = batch()
    s = get("gradient").scores(model, NAMES, batch=(x, y), loss_fn=F.cross_entropy)
    loss = F.cross_entropy(model(x), y)
    g = torch.autograd.grad(loss, [model[0].weight, model[2].weight])
    assert torch.allclose(s["0.weight"], g[0].abs()) and torch.allclose(s["2.weight"], g[1].abs())
    assert model[0].weight.grad is None


def test_gradient_from_dot_grad_after_backward():
    model = mlp()
    x, y = batch()
    F.cross_entropy(model(x), y).backward()
    s = get("gradient").scores(model, NAMES)
    assert torch.equal(s["2.weight"], model[2].weight.grad.abs())


def test_gradient_without_gradients_raises():
    with pytest.raises(ValueError, match="needs gradients"):
        get("taylor").scores(mlp(), NAMES)


def test_gradient_on_batch_leaves_batchnorm_stats_alone_and_defaults_to_cross_entropy():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Linear(5, 3))
    x, y = batch()
    stats = model[1].running_mean.clone()
    s = get("gradient").scores(model, ["0.weight"], batch=(x, y))
    assert torch.equal(model[1].running_mean, stats)
    expected = torch.autograd.grad(F.cross_entropy(model(x), y), model[0].weight)[0]
    assert torch.allclose(s["0.weight"], expected.abs())


def test_taylor_equals_snip_connection_sensitivity():
    # SNIP: c = 1 multiplies each weight; the score is |dL/dc|. Computed independently through
    # functional_call with weights w * c.
    model = mlp()
    x, y = batch()
    s = get("taylor").scores(model, NAMES, batch=(x, y), loss_fn=F.cross_entropy)
    params = dict(model.named_parameters())
    c = {n: torch.ones_like(params[n], requires_grad=True) for n in NAMES}
    effective = {n: (p.detach() * c[n] if n in c else p.detach()) for n, p in params.items()}
    loss = F.cross_entropy(functional_call(model, effective, (x,)), y)
    dc = torch.autograd.grad(loss, [c[n] for n in NAMES])
    for n, d in zip(NAMES, dc):
        assert torch.allclose(s[n], d.abs(), atol=1e-7)


def test_unknown_parameter_names():
    with pytest.raises(ValueError, match=r"model has no parameters \['fc9.weight'\]"):
        get("magnitude").scores(mlp(), ["fc9.weight"])


def test_custom_criterion_plugs_in():
    class Ones(ElementwiseCriterion):
        name = "ones"

        def score(self, weight, grad, generator):
            return torch.ones_like(weight)

    assert isinstance(Ones(), Criterion)
    s = Ones().scores(mlp(), NAMES)
    assert s["2.weight"].shape == (3, 5) and bool((s["2.weight"] == 1).all())
