import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import sparsetorch
from sparsetorch.formats import BSR, CSR
from sparsetorch.masking import attach_mask
from sparsetorch.metrics import density, sparsity


def test_golden_tensor():
    t = torch.tensor([0.0, 1.0, -0.0, float("nan"), 0.0, 2.0, 0.0, 0.0])
    assert sparsity(t) == 5 / 8  # both zeros count as zero, NaN is nonzero
    assert density(t) == 3 / 8
    assert sparsetorch.sparsity is sparsity and sparsetorch.density is density


@settings(max_examples=50, deadline=None)
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    keep=st.floats(0, 1),
    seed=st.integers(0, 2**16),
)
def test_equals_numpy_count(shape, keep, seed):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(shape, generator=g) * (torch.rand(shape, generator=g) < keep)
    nonzero = np.count_nonzero(t.numpy())
    assert density(t) == nonzero / t.numel()
    assert sparsity(t) == (t.numel() - nonzero) / t.numel()
    if t.dim() == 2:  # a format counts the nonzeros it holds, not its stored zeros
        assert density(CSR.from_dense(t)) == density(t)
        assert density(BSR.from_dense(t, (1, t.shape[1]))) == density(t)


def _model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 4))
    with torch.no_grad():
        model[0].weight.view(-1)[:9] = 0  # 9 of 18 conv weights
        model[3].weight[0] = 0  # 8 of 32 linear weights
        model[0].bias.copy_(torch.tensor([0.0, 1.0]))
        model[3].bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
    return model


def test_module_counts_prunable_weights_by_default():
    model = _model()
    assert density(model) == (9 + 24) / (18 + 32)
    assert sparsity(model) == 17 / 50
    # all: conv weight 9/18, conv bias 1/2, BN weight 2/2 and bias 0/2, linear 24/32 and 1/4
    assert density(model, params="all") == (9 + 1 + 2 + 0 + 24 + 1) / 60


def test_masked_model_density_follows_its_zeros():
    model = nn.Linear(10, 10)
    mask = torch.zeros(10, 10, dtype=torch.bool)
    mask[:, :3] = True
    attach_mask(model, "weight", mask)
    assert density(model) == 0.3


def test_errors():
    with pytest.raises(ValueError, match="params must be one of prunable, all, got 'weights'"):
        density(nn.Linear(2, 2), params="weights")
    with pytest.raises(
        TypeError, match=r"must be a torch.Tensor, a sparsetorch format or an nn.Module"
    ):
        sparsity([1.0, 0.0])
    with pytest.raises(ValueError, match="it has no elements"):
        density(torch.zeros(0, 3))
    with pytest.raises(TypeError, match=r"dense tensor, got layout torch.sparse_coo"):
        density(torch.eye(2).to_sparse())
    with pytest.raises(ValueError, match="no prunable parameters"):
        density(nn.BatchNorm1d(3))
