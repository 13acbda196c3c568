"""Every pruning algorithm says what it does not do as asked, as ``st.prune`` does: weights of
2+ dims that no prunable kind covers stay dense (one warning naming them), and an N:M layer the
pattern does not tile (a stem conv of 3 input channels) is pruned with a partial last group per
row, as the papers prune every layer (one warning naming it)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sparsetorch as st
from sparsetorch.algorithms.at_init import grasp, random_prune, snip, synflow


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 8, 3, padding=1)  # rows of 3 input channels: no 2:4 tiling
        self.pos = nn.Parameter(torch.randn(8, 8, 8) * 0.1)  # no prunable kind covers it
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        return self.fc((self.stem(x) + self.pos).flatten(1))


X = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
Y = torch.tensor([0, 1, 2, 3])


def _during(cls):
    def run(model, pattern):
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        algo = getattr(st, cls)(model, opt, sparsity=0.5, total_steps=4, delta_t=2, pattern=pattern)
        for _ in range(4):
            opt.zero_grad()
            F.cross_entropy(model(X), Y).backward()
            algo.step()

    return run


ALGORITHMS = {
    "snip": lambda m, p: snip(m, (X, Y), 0.5, pattern=p),
    "grasp": lambda m, p: grasp(m, (X, Y), 0.5, pattern=p),
    "synflow": lambda m, p: synflow(m, None, 0.5, inputs=X, iterations=2, pattern=p),
    "random": lambda m, p: random_prune(m, 0.5, pattern=p, generator=0),
    "rigl": _during("RigL"),
    "set": _during("SET"),
    "gmp": _during("GMP"),
}


def messages(name: str, pattern: str) -> list[str]:
    model = Net()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ALGORITHMS[name](model, pattern)
    assert set(st.masks(model)) == {"stem.weight", "fc.weight"}
    return [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


@pytest.mark.parametrize("name", ALGORITHMS)
def test_uncovered_weights_are_named_once(name):
    found = [m for m in messages(name, "unstructured") if "no prunable kind" in m]
    assert len(found) == 1 and "pos (8, 8, 8)" in found[0]


@pytest.mark.parametrize("name", ALGORITHMS)
def test_layers_pruned_with_partial_nm_groups_are_named_once(name):
    found = [m for m in messages(name, "2:4") if "does not tile" in m]
    assert len(found) == 1, found
    assert found[0].startswith(f"{name} prunes every layer") and "stem.weight" in found[0]
    assert "fc.weight" not in found[0]
    assert not [m for m in messages(name, "unstructured") if "does not tile" in m]
