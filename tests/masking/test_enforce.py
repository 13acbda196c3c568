import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sparsetorch as sparse
from sparsetorch.masking import apply_masks, mask_gradients_

OPTIMIZERS = {
    "sgd_momentum": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
    "sgd_nesterov_wd": lambda p: torch.optim.SGD(
        p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2
    ),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2),
    "adam_foreach": lambda p: torch.optim.Adam(p, lr=1e-2, foreach=True),
    "adamw_wd": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
    "adamw_amsgrad": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1, amsgrad=True),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=1e-3, momentum=0.5),
    "adagrad": lambda p: torch.optim.Adagrad(p, lr=1e-2),
}


def model_and_data(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 16),
        nn.ReLU(),
        nn.Linear(16, 3),
    )
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 3, (32,))
    return model, x, y


def train(model, opt, x, y, steps):
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()


def masked_state_is_zero(opt, model):
    masks = sparse.masks(model)
    params = dict(model.named_parameters())
    checked = 0
    for name, mask in masks.items():
        for key, value in opt.state[params[name]].items():
            if isinstance(value, torch.Tensor) and value.shape == mask.shape:
                # Adagrad's sum starts at initial_accumulator_value (0) and only adds grad^2
                assert bool((value[~mask] == 0).all()), (name, key)
                checked += 1
    return checked


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_100_steps_keep_masks_zeros_and_zero_moments(name):
    model, x, y = model_and_data()
    sparse.prune(model, 0.8)
    masks = {n: m.clone() for n, m in sparse.masks(model).items()}
    opt = OPTIMIZERS[name](model.parameters())
    train(model, opt, x, y, 100)
    for n, m in sparse.masks(model).items():
        assert torch.equal(m, masks[n]), n  # masks unchanged
        assert bool((model.get_parameter(n)[~m] == 0).all()), n
        assert bool((model.get_parameter(n)[m] != 0).any()), n  # the kept weights did train
    assert masked_state_is_zero(opt, model) >= len(masks)


def test_grad_between_backward_and_step_is_dense():
    model, x, y = model_and_data()
    sparse.prune(model, 0.9)
    reference = model_and_data()[0]
    reference.load_state_dict(model.state_dict(), strict=False)  # same effective weights
    F.cross_entropy(model(x), y).backward()
    F.cross_entropy(reference(x), y).backward()
    mask = model[3].weight_sparsity_mask
    assert torch.equal(model[3].weight.grad, reference[3].weight.grad)  # dense
    assert bool((model[3].weight.grad[~mask] != 0).any())
    mask_gradients_(model)
    assert bool((model[3].weight.grad[~mask] == 0).all())


def test_changed_mask_zeroes_stale_moments_at_the_next_step():
    model, x, y = model_and_data()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    train(model, opt, x, y, 5)  # dense moments everywhere
    sparse.prune(model, 0.5)
    train(model, opt, x, y, 1)
    assert masked_state_is_zero(opt, model) > 0
    # grow back: positions pruned just now hold zero moments, so they restart from scratch
    apply_masks(model, {n: torch.ones_like(m) for n, m in sparse.masks(model).items()})
    state = opt.state[model[3].weight]["exp_avg"].clone()
    assert bool((state[model[3].weight == 0] == 0).all())


def test_unmasked_parameters_and_other_optimizers_are_untouched():
    model, x, y = model_and_data()
    sparse.prune(model, 0.5, exclude=["5"])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train(model, opt, x, y, 3)
    assert bool((model[5].weight != 0).all())  # excluded layer stays dense


def test_optimizer_over_a_param_subset():
    model, x, y = model_and_data()
    sparse.prune(model, 0.7)
    opt = torch.optim.SGD(model[3].parameters(), lr=0.5, momentum=0.9)
    train(model, opt, x, y, 10)
    assert bool((model[3].weight[~model[3].weight_sparsity_mask] == 0).all())
