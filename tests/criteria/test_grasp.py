import pytest
import torch
from torch import nn
from torch.func import functional_call

from sparsetorch.criteria._batches import cross_entropy
from sparsetorch.criteria.grasp import grasp_scores, hessian_gradient_product

NAMES = ["0.weight", "2.weight"]


def _mlp(seed=0, scale=1.0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
    return model


def _exact(model, x, y, temperature):
    """theta * (H g) with H from torch.autograd.functional.hessian over the flat weights."""
    shapes = [model.get_parameter(n).shape for n in NAMES]
    sizes = [s.numel() for s in shapes]
    theta = torch.cat([model.get_parameter(n).detach().flatten() for n in NAMES])

    def loss(flat):
        parts = dict(zip(NAMES, (p.view(s) for p, s in zip(flat.split(sizes), shapes))))
        return cross_entropy(functional_call(model, parts, (x,)) / temperature, y)

    hessian = torch.autograd.functional.hessian(loss, theta)  # (P, P)
    g = torch.autograd.functional.jacobian(loss, theta)  # (P,)
    score = theta * (hessian @ g)
    return dict(zip(NAMES, (p.view(s) for p, s in zip(score.split(sizes), shapes))))


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_equals_exact_hessian(temperature):
    model = _mlp()
    x = torch.randn(6, 3, dtype=torch.float64)
    y = torch.randint(0, 3, (6,))
    scores = grasp_scores(model, NAMES, (x, y), temperature=temperature)
    for name, expected in _exact(model, x, y, temperature).items():
        torch.testing.assert_close(scores[name], expected, rtol=1e-10, atol=1e-14)


def test_several_batches_equal_their_union():
    model = _mlp(1)
    x = torch.randn(9, 3, dtype=torch.float64)
    y = torch.randint(0, 3, (9,))
    split = grasp_scores(model, NAMES, [(x[:4], y[:4]), (x[4:], y[4:])], temperature=1.0)
    expected = _exact(model, x, y, 1.0)
    for name in NAMES:
        torch.testing.assert_close(split[name], expected[name], rtol=1e-10, atol=1e-14)


def _grad_norm_sq(model, x, y, overrides):
    params = {n: model.get_parameter(n).detach().clone().requires_grad_(True) for n in NAMES}
    params.update(overrides)
    loss = cross_entropy(functional_call(model, params, (x,)), y)
    grads = torch.autograd.grad(loss, [params[n] for n in NAMES])
    return sum((g**2).sum() for g in grads).item()


def _removal_effects(model, x, y, fraction):
    """Change of ||g||^2 when each weight alone is scaled by (1 - fraction)."""
    base = _grad_norm_sq(model, x, y, {})
    effects = []
    for name in NAMES:
        w = model.get_parameter(name).detach()
        for idx in range(w.numel()):
            shrunk = w.clone().flatten()
            shrunk[idx] *= 1 - fraction
            override = {name: shrunk.view_as(w).requires_grad_(True)}
            effects.append(_grad_norm_sq(model, x, y, override) - base)
    return torch.tensor(effects, dtype=torch.float64)


def test_sign_convention_matches_gradient_norm_change():
    # Shrinking weight q towards removal changes ||g||^2 at rate -2 * theta_q (H g)_q
    # = -2 * score_q. So the highest score (kept first) is the weight whose removal reduces
    # gradient flow most; the paper removes the lowest (largest S(-theta) = -score).
    model = _mlp(2, scale=0.3)
    x = torch.randn(16, 3, dtype=torch.float64)
    y = torch.randint(0, 3, (16,))
    scores = grasp_scores(model, NAMES, (x, y), temperature=1.0)
    flat = torch.cat([scores[n].flatten() for n in NAMES])
    eps = 1e-6
    torch.testing.assert_close(
        _removal_effects(model, x, y, eps) / eps, -2 * flat, rtol=1e-4, atol=1e-9
    )
    # whole removal (first order only, so compare the extremes)
    removed = _removal_effects(model, x, y, 1.0)
    assert removed[flat.argmax()] < 0 < removed[flat.argmin()]


def test_linear_model_has_zero_hessian_product_for_no_curvature_path():
    # A single linear layer: loss is still curved through softmax, so H g != 0 in general,
    # but a weight whose input column is always zero gets exactly zero score.
    model = nn.Sequential(nn.Linear(3, 2, bias=False)).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    x[:, 1] = 0
    leaves = {"0.weight": model[0].weight.detach().clone().requires_grad_(True)}
    hg = hessian_gradient_product(model, leaves, [(x, torch.randint(0, 2, (5,)))])
    assert torch.equal(hg["0.weight"][:, 1], torch.zeros(2, dtype=torch.float64))
    assert hg["0.weight"][:, 0].abs().min() > 0


def test_model_untouched():
    model = _mlp(3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grasp_scores(model, NAMES, (torch.randn(4, 3, dtype=torch.float64), torch.zeros(4).long()))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("temperature", [0, -1.0, float("nan"), float("inf"), "200"])
def test_bad_temperature(temperature):
    with pytest.raises(ValueError, match="temperature must be"):
        grasp_scores(
            _mlp(),
            NAMES,
            (torch.randn(2, 3).double(), torch.zeros(2).long()),
            temperature=temperature,
        )


def test_batch_that_does_not_fit():
    with pytest.raises(ValueError, match="does not fit the model"):
        grasp_scores(_mlp(), NAMES, (torch.randn(2, 5).double(), torch.zeros(2).long()))


def test_registered_criterion_uses_its_temperature():
    from sparsetorch.criteria import CRITERIA

    model = _mlp(5)
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.randint(0, 3, (5,))
    scores = CRITERIA.build("grasp", temperature=3.0).scores(model, NAMES, batch=(x, y))
    for name, expected in _exact(model, x, y, 3.0).items():
        torch.testing.assert_close(scores[name], expected, rtol=1e-10, atol=1e-14)
    default = CRITERIA.build("grasp").scores(model, NAMES, batch=(x, y))
    torch.testing.assert_close(default["0.weight"], _exact(model, x, y, 200.0)["0.weight"])
    with pytest.raises(ValueError, match="criterion 'grasp' scores on data"):
        CRITERIA.build("grasp").scores(model, NAMES)


def _tiny_conv():
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16, 3)
    ).double()


def _tiny_transformer():
    # SDPA's fused CPU kernel has no double backward; GraSP switches to the math kernel
    from sparsetorch.models.transformer import CausalTransformer

    torch.manual_seed(0)
    return CausalTransformer(vocab_size=11, context=6, d_model=8, n_layers=1, n_heads=2).double()


@pytest.mark.parametrize(
    ("build", "names", "x"),
    [
        (_tiny_conv, ["0.weight", "2.weight", "5.weight"], torch.randn(4, 1, 6, 6).double()),
        (
            _tiny_transformer,
            ["blocks.0.attn.qkv.weight", "blocks.0.mlp.0.weight"],
            torch.randint(0, 11, (3, 6)),
        ),
    ],
)
def test_conv_and_attention_match_finite_differences(build, names, x):
    model = build()
    y = torch.randint(0, 3, x.shape[:1]) if x.is_floating_point() else torch.randint(0, 11, x.shape)
    scores = grasp_scores(model, names, (x, y), temperature=1.0)

    def grad_at(shift):
        params = {
            n: (model.get_parameter(n).detach() + shift.get(n, 0)).requires_grad_(True)
            for n in names
        }
        loss = cross_entropy(functional_call(model, params, (x,)), y)
        return dict(zip(names, torch.autograd.grad(loss, list(params.values()))))

    g = grad_at({})
    eps = 1e-5
    plus = grad_at({n: eps * g[n] for n in names})
    minus = grad_at({n: -eps * g[n] for n in names})
    for n in names:
        hg = (plus[n] - minus[n]) / (2 * eps)
        expected = model.get_parameter(n).detach() * hg
        torch.testing.assert_close(scores[n], expected, rtol=1e-5, atol=1e-10)
