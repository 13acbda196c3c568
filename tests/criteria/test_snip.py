import math

import numpy as np
import pytest
import torch
from torch import nn

from sparsetorch.criteria.snip import snip_scores


def _mlp(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).to(dtype)


def _numpy_snip(model, x, y):
    """Hand-derived backward pass of Linear-ReLU-Linear + mean cross-entropy, in numpy."""
    w1, b1 = model[0].weight.detach().numpy(), model[0].bias.detach().numpy()
    w2, b2 = model[2].weight.detach().numpy(), model[2].bias.detach().numpy()
    x, y = x.numpy(), y.numpy()
    a = x @ w1.T + b1  # (N, 4)
    h = np.maximum(a, 0)
    z = h @ w2.T + b2  # (N, 2)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz = (p - np.eye(2)[y]) / len(x)
    dw2 = dz.T @ h
    da = (dz @ w2) * (a > 0)
    dw1 = da.T @ x
    return {"0.weight": np.abs(dw1 * w1), "2.weight": np.abs(dw2 * w2)}


def test_golden_value_by_hand():
    # x=1 -> w1=2 -> relu -> w2=[1,-1] -> logits [2,-2], y=0. With s = 1/(1+e^4):
    # dL/dz = [-s, s], dL/dw2 = 2[-s, s], dL/dw1 = -2s  => scores |g*w| = 4s and [2s, 2s].
    model = nn.Sequential(nn.Linear(1, 1, bias=False), nn.ReLU(), nn.Linear(1, 2, bias=False))
    with torch.no_grad():
        model[0].weight.fill_(2.0)
        model[2].weight.copy_(torch.tensor([[1.0], [-1.0]]))
    scores = snip_scores(model, ["0.weight", "2.weight"], (torch.ones(1, 1), torch.tensor([0])))
    s = 1 / (1 + math.exp(4))
    torch.testing.assert_close(scores["0.weight"], torch.tensor([[4 * s]]))
    torch.testing.assert_close(scores["2.weight"], torch.tensor([[2 * s], [2 * s]]))


def test_equals_hand_derived_backward():
    model = _mlp()
    x = torch.randn(7, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (7,))
    scores = snip_scores(model, ["0.weight", "2.weight"], (x, y))
    for name, expected in _numpy_snip(model, x, y).items():
        np.testing.assert_allclose(scores[name].numpy(), expected, rtol=1e-12, atol=1e-15)


def test_several_batches_equal_their_union():
    model = _mlp(1)
    x = torch.randn(10, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (10,))
    names = ["0.weight", "2.weight"]
    split = snip_scores(model, names, [(x[:3], y[:3]), (x[3:], y[3:])])
    whole = snip_scores(model, names, (x, y))
    for name in names:
        torch.testing.assert_close(split[name], whole[name], rtol=1e-12, atol=1e-15)


def test_batches_from_a_dataloader():
    model = _mlp(5)
    x = torch.randn(10, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (10,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    names = ["0.weight", "2.weight"]
    from_loader = snip_scores(model, names, loader)
    whole = snip_scores(model, names, (x, y))
    for name in names:
        torch.testing.assert_close(from_loader[name], whole[name], rtol=1e-12, atol=1e-15)


def test_model_untouched_bn_stats_grads_rng():
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(),
        nn.Linear(2 * 4 * 4, 3),
    )  # fmt: skip
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = (torch.randn(4, 1, 6, 6), torch.arange(4) % 3)
    rng = torch.get_rng_state()
    scores = snip_scores(model, ["0.weight", "5.weight"], batch)
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())
    assert scores["0.weight"].shape == (2, 1, 3, 3) and (scores["0.weight"] > 0).any()


def test_pruned_weight_scores_zero():
    model = _mlp(2)
    with torch.no_grad():
        model[0].weight[1, 2] = 0.0
    x = torch.randn(5, 3, dtype=torch.float64)
    scores = snip_scores(model, ["0.weight"], (x, torch.zeros(5, dtype=torch.long)))
    assert scores["0.weight"][1, 2] == 0


def test_bad_inputs():
    model = _mlp(dtype=torch.float32)
    y = torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="does not fit the model"):
        snip_scores(model, ["0.weight"], (torch.randn(4, 5), y))
    with pytest.raises(ValueError, match="do not fit the model output"):
        snip_scores(model, ["0.weight"], (torch.randn(4, 3), torch.full((4,), 7)))
    with pytest.raises(ValueError, match="first \\(batch\\) dimension"):
        snip_scores(model, ["0.weight"], (torch.randn(4, 3), torch.zeros(3, dtype=torch.long)))
    with pytest.raises(ValueError, match="no prunable weights"):
        snip_scores(model, [], (torch.randn(4, 3), y))
    with pytest.raises(ValueError, match="no parameters"):
        snip_scores(model, ["9.weight"], (torch.randn(4, 3), y))
    with pytest.raises(ValueError, match="non-empty iterable"):
        snip_scores(model, ["0.weight"], [])
    with pytest.raises(TypeError, match="batches\\[0\\]"):
        snip_scores(model, ["0.weight"], [(torch.randn(4, 3), y, y)])
    # a tensor batch is the input of a model that computes its own loss: this one does not
    with pytest.raises(ValueError, match="has no targets and the model computed no loss"):
        snip_scores(model, ["0.weight"], [torch.randn(4, 3)])


def test_registered_criterion_drives_prune():
    from sparsetorch.criteria import CRITERIA
    from sparsetorch.masking import get_masks
    from sparsetorch.pruning import compute_masks, prune

    model = _mlp(4)
    batch = (torch.randn(8, 3, dtype=torch.float64), torch.randint(0, 2, (8,)))
    names = ["0.weight", "2.weight"]
    expected = compute_masks(model, 0.7, scores=snip_scores(model, names, batch))
    prune(model, 0.7, criterion="snip", batch=batch)
    assert all(torch.equal(get_masks(model)[n], expected[n]) for n in names)
    with pytest.raises(ValueError, match="criterion 'snip' scores on data"):
        CRITERIA.build("snip").scores(model, names)
