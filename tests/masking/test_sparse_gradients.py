"""Masks stay enforced for sparse gradients (``nn.Embedding(sparse=True)``): no optimizer
crashes on them, and every optimizer state tensor stays exactly zero at pruned positions, as
it does for dense gradients."""

import pytest
import torch
from torch import nn

import sparsetorch as sparse

OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.1),
    "sgd_momentum": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
    "sgd_momentum_dampening": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.1),
    "sparse_adam": lambda p: torch.optim.SparseAdam(p, lr=1e-2),
    "adagrad": lambda p: torch.optim.Adagrad(p, lr=1e-1),
}


def _setup(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Embedding(30, 8, sparse=True), nn.Flatten(), nn.Linear(24, 4))
    sparse.prune(model, 0.6, exclude=["2"])  # only the embedding: its gradient is sparse
    return model


def _steps(model, opt, steps, seed=1):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        tokens = torch.randint(0, 30, (16, 3), generator=gen)  # (batch, 3 tokens)
        target = torch.randint(0, 4, (16,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(tokens), target).backward()
        assert model[0].weight.grad.is_sparse
        opt.step()


def _dense(t):
    return t.to_dense() if t.is_sparse else t


def _state_at(opt, param, mask):
    """(state tensors shaped like param, how many are nonzero at kept positions)."""
    tensors = [
        _dense(v)
        for v in opt.state[param].values()
        if isinstance(v, torch.Tensor) and v.shape == param.shape
    ]
    return tensors, sum(int(t[mask].count_nonzero()) for t in tensors)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_pruned_weights_and_moments_stay_zero_with_sparse_gradients(name):
    model = _setup()
    weight = model[0].weight
    mask = model[0].weight_sparsity_mask.clone()
    params = [weight] if name == "sparse_adam" else list(model.parameters())
    opt = OPTIMIZERS[name](params)
    before = weight.detach().clone()
    _steps(model, opt, 10)
    assert bool((weight[~mask] == 0).all())
    assert not torch.equal(weight[mask], before[mask])  # training did move the kept weights
    tensors, kept_nonzero = _state_at(opt, weight, mask)
    if name != "sgd":
        assert tensors and kept_nonzero > 0  # the moments exist and are used
    for t in tensors:
        assert bool((t[~mask] == 0).all())


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_changed_mask_zeroes_sparse_and_dense_moments(name):
    model = _setup()
    weight = model[0].weight
    params = [weight] if name == "sparse_adam" else list(model.parameters())
    opt = OPTIMIZERS[name](params)
    _steps(model, opt, 5)
    sparse.prune(model, 0.8, exclude=["2"])  # prunes more: the new mask drops kept weights
    mask = model[0].weight_sparsity_mask.clone()
    _steps(model, opt, 5, seed=2)
    assert bool((weight[~mask] == 0).all())
    for t in _state_at(opt, weight, mask)[0]:
        assert bool((t[~mask] == 0).all())


def test_sparse_training_matches_dense_training_with_the_same_mask():
    """SGD with momentum on a sparse gradient gives the weights of the same run on the dense
    gradient (an independent path: masks applied to a strided gradient)."""
    results = []
    for use_sparse in (True, False):
        model = _setup()
        model[0].sparse = use_sparse
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        gen = torch.Generator().manual_seed(1)
        for _ in range(8):
            tokens = torch.randint(0, 30, (16, 3), generator=gen)
            target = torch.randint(0, 4, (16,), generator=gen)
            opt.zero_grad()
            nn.functional.cross_entropy(model(tokens), target).backward()
            opt.step()
        results.append(model[0].weight.detach().clone())
    torch.testing.assert_close(results[0], results[1], rtol=1e-6, atol=1e-7)


def test_mask_gradients_masks_a_sparse_gradient():
    model = _setup()
    tokens = torch.arange(30).reshape(10, 3)
    nn.functional.cross_entropy(model(tokens), torch.zeros(10, dtype=torch.long)).backward()
    grad = model[0].weight.grad
    assert grad.is_sparse and bool((grad.to_dense()[~model[0].weight_sparsity_mask] != 0).any())
    sparse.mask_gradients_(model)
    masked = model[0].weight.grad
    assert masked.is_sparse
    assert bool((masked.to_dense()[~model[0].weight_sparsity_mask] == 0).all())
    kept = model[0].weight_sparsity_mask
    assert torch.equal(masked.to_dense()[kept], grad.to_dense()[kept])
