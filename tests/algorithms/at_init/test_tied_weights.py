"""A parameter shared by two modules (tied weights) is one parameter: scored once (by
identity, with the gradient of all its uses), counted once in the global threshold, and its
mask is the same under both of its names."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sparsetorch as st
from sparsetorch.algorithms.at_init import grasp, random_prune, snip, synflow
from sparsetorch.criteria import get as get_criterion
from sparsetorch.criteria.grasp import grasp_scores
from sparsetorch.criteria.snip import snip_scores
from sparsetorch.criteria.synflow import synflow_scores


class Tied(nn.Module):
    """a and b share one 6x6 weight (36 distinct weights, listed by both modules)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 6)
        self.mid = nn.Linear(6, 6)
        self.b = nn.Linear(6, 6)
        self.b.weight = self.a.weight
        self.out = nn.Linear(6, 3)

    def forward(self, x):
        return self.out(F.relu(self.b(F.relu(self.mid(F.relu(self.a(x)))))))


def tied(dtype=torch.float64):
    torch.manual_seed(0)
    return Tied().to(dtype)


def data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(16, 6, generator=g, dtype=torch.float64), torch.randint(
        0, 3, (16,), generator=g
    )


ALL = ["a.weight", "mid.weight", "b.weight", "out.weight"]  # b.weight is a.weight's alias


def reference_snip(model, x, y):
    """|w * dL/dw| by plain autograd on the model itself (the gradient sums both uses)."""
    params = [model.a.weight, model.mid.weight, model.out.weight]
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), params)
    return {n: (p.detach() * g).abs() for n, p, g in zip(["a", "mid", "out"], params, grads)}


def test_snip_scores_a_tied_weight_once_under_both_names():
    model, (x, y) = tied(), data()
    scores = snip_scores(model, ALL, (x, y))
    assert list(scores) == ALL
    expected = reference_snip(model, x, y)
    torch.testing.assert_close(scores["a.weight"], expected["a"], rtol=1e-12, atol=1e-15)
    assert torch.equal(scores["b.weight"], scores["a.weight"])
    # the alias alone scores the same parameter
    assert torch.equal(snip_scores(model, ["b.weight"], (x, y))["b.weight"], scores["a.weight"])


@pytest.mark.parametrize("criterion", ["taylor", "gradient", "magnitude", "grasp", "synflow"])
def test_every_criterion_gives_both_names_one_score(criterion):
    model, batch = tied(), data()
    scores = get_criterion(criterion).scores(model, ALL, batch=batch)
    assert list(scores) == ALL
    assert torch.equal(scores["b.weight"], scores["a.weight"])
    alone = get_criterion(criterion).scores(
        model, ["a.weight", "mid.weight", "out.weight"], batch=batch
    )
    assert torch.equal(alone["a.weight"], scores["a.weight"])


def test_grasp_and_synflow_of_a_tied_weight_match_autograd_on_the_model():
    model, (x, y) = tied(), data()
    params = [model.a.weight, model.mid.weight, model.out.weight]
    g = torch.autograd.grad(F.cross_entropy(model(x), y), params, create_graph=True)
    hg = torch.autograd.grad(sum((gi.detach() * gi).sum() for gi in g), model.a.weight)[0]
    got = grasp_scores(model, ALL, (x, y), temperature=1.0)
    torch.testing.assert_close(
        got["b.weight"], model.a.weight.detach() * hg, rtol=1e-10, atol=1e-14
    )
    linear = copy.deepcopy(model)  # the deepcopy keeps the tie
    with torch.no_grad():
        for p in linear.parameters():
            p.abs_()
    r = linear(torch.ones(1, 6, dtype=torch.float64)).sum()
    dw = torch.autograd.grad(r, linear.a.weight)[0]
    got = synflow_scores(model, ALL, (6,))
    torch.testing.assert_close(
        got["b.weight"], (dw * linear.a.weight).abs().detach(), rtol=1e-12, atol=0
    )


PRUNERS = {
    "snip": lambda m, b: snip(m, b, 0.5),
    "grasp": lambda m, b: grasp(m, b, 0.5),
    "synflow": lambda m, b: synflow(m, (6,), 0.5, iterations=5),
    "random": lambda m, b: random_prune(m, 0.5, generator=0, distribution="global"),
}


@pytest.mark.parametrize("method", sorted(PRUNERS))
def test_at_init_counts_a_tied_weight_once_and_masks_it_once(method):
    model = tied()
    PRUNERS[method](model, data())
    masks = st.masks(model)
    # one mask per distinct parameter, under its first name; b.weight *is* a.weight, so the
    # pruned entries are zero under both names (a second, separately stored copy of the mask
    # could go stale when the mask changes later)
    assert list(masks) == ["a.weight", "mid.weight", "out.weight"]
    assert model.b.weight is model.a.weight
    assert bool((model.b.weight[~masks["a.weight"]] == 0).all())
    distinct = 36 + 36 + 18  # the tied 6x6 counted once in the global threshold
    assert sum(int(m.sum()) for m in masks.values()) == distinct // 2
    assert st.sparsity(model) == 0.5
    # a training step keeps the pruned entries of the shared weight zero
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = data()
    F.cross_entropy(model(x), y).backward()
    opt.step()
    assert bool((model.b.weight[~masks["a.weight"]] == 0).all())


def test_prune_by_scores_of_either_name_gives_the_same_mask():
    # scores computed for the alias names (as a state_dict lists them) rank the same
    model, batch = tied(), data()
    names = ["a.weight", "mid.weight", "out.weight"]
    via_alias = snip_scores(model, ["b.weight", "mid.weight", "out.weight"], batch)
    scores = dict(zip(names, via_alias.values()))
    masks = st.compute_masks(model, 0.5, scores=scores)
    expected = st.compute_masks(model, 0.5, scores=snip_scores(model, names, batch))
    assert all(torch.equal(masks[n], expected[n]) for n in names)
