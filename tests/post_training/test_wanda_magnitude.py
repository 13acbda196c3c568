import pytest
import torch
from torch import nn

import sparsetorch as st
from sparsetorch.patterns import NM
from sparsetorch.post_training import Magnitude, Wanda, make_target
from sparsetorch.post_training.statistics import SquaredNorms

T, F = True, False
W = torch.tensor([[1.0, -2.0, 3.0, -4.0], [8.0, 6.0, -4.0, 2.0]])
# two tokens; input norms ||X_j||_2 = (5, 1, 1, 0.5)
X = torch.tensor([[3.0, 0.0, 1.0, 0.0], [4.0, 1.0, 0.0, 0.5]])
# Wanda scores |W| * ||X||: [[5, 2, 3, 2], [40, 6, 4, 1]]


def _linear(weight):
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer


def _norms(x):
    stats = SquaredNorms(x.shape[1], x.device, torch.float32)
    stats.add(x)
    return stats


@pytest.mark.parametrize(
    ("sparsity", "pattern", "golden"),
    [
        # per output row: row 0 keeps scores 5 and 3, row 1 keeps 40 and 6 (a per-layer
        # comparison would keep 40, 6, 5, 4: one weight of row 0, three of row 1)
        (0.5, None, [[T, F, T, F], [T, T, F, F]]),
        # keep 3 of 4: row 0's tie between scores 2 and 2 goes to the lower column
        (0.25, None, [[T, T, T, F], [T, T, T, F]]),
        (None, "2:4", [[T, F, T, F], [T, T, F, F]]),
        (None, "1:4", [[T, F, F, F], [T, F, F, F]]),
    ],
)
def test_wanda_golden_masks(sparsity, pattern, golden):
    _, keep = Wanda().prune(W, _norms(X), make_target(sparsity, pattern))
    assert keep.tolist() == golden
    layer = _linear(W)
    st.oneshot(layer, "wanda", [X], sparsity=sparsity, pattern=pattern)
    assert layer.weight_sparsity_mask.tolist() == golden
    assert torch.equal(layer.weight.detach(), W * torch.tensor(golden))  # no weight update


def test_wanda_n_m_groups_run_along_the_input_dim():
    w = torch.tensor([[1.0, 2, 3, 4, 8, 7, 6, 5]])
    x = torch.ones(1, 8)
    _, keep = Wanda().prune(w, _norms(x), make_target(None, "2:4"))
    assert keep.tolist() == [[F, F, T, T, T, T, F, F]]
    x = torch.tensor([[1.0, 1, 1, 1, 1, 1, 10, 10]])  # activations outweigh magnitudes
    _, keep = Wanda().prune(w, _norms(x), make_target(None, "2:4"))
    assert keep.tolist() == [[F, F, T, T, F, F, T, T]]


@pytest.mark.parametrize(
    ("sparsity", "pattern", "golden"),
    [
        # per layer: |W| = 1 2 3 4 / 8 6 4 2; the tie between the two 4s keeps both (k = 4)
        (0.5, None, [[F, F, F, T], [T, T, T, F]]),
        (0.75, None, [[F, F, F, F], [T, T, F, F]]),
        (None, "2:4", [[F, F, T, T], [T, T, F, F]]),
    ],
)
def test_magnitude_golden_masks_per_layer(sparsity, pattern, golden):
    _, keep = Magnitude().prune(W, None, make_target(sparsity, pattern))
    assert keep.tolist() == golden
    layer = _linear(W)
    st.oneshot(layer, "magnitude", sparsity=sparsity, pattern=pattern)  # no data needed
    assert layer.weight_sparsity_mask.tolist() == golden


@pytest.mark.parametrize("pattern", ["2:4", "4:8", "1:4"])
@pytest.mark.parametrize("method", [Wanda(), Magnitude()])
def test_every_mask_is_n_m_valid_with_exactly_n_per_group(pattern, method):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(12, 40, generator=g)
    x = torch.randn(30, 40, generator=g)
    _, keep = method.prune(w, _norms(x), make_target(None, pattern))
    nm = NM(*map(int, pattern.split(":")))
    assert nm.is_valid(keep)
    assert (keep.view(12, -1, nm.m).sum(-1) == nm.n).all()


def test_unstructured_wanda_prunes_the_same_count_in_every_row():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(7, 33, generator=g)
    x = torch.randn(10, 33, generator=g) * torch.linspace(0.1, 5, 33)
    _, keep = Wanda().prune(w, _norms(x), make_target(0.6, None))
    assert keep.sum(1).tolist() == [13] * 7  # round(0.4 * 33)
