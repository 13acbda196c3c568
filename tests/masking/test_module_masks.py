import pytest
import torch
from torch import nn

import sparsetorch as sparse
from sparsetorch.masking import (
    apply_masks,
    attach_mask,
    detach_mask,
    get_mask,
    get_masks,
    masks_from_state_dict,
    remove_masks,
)


def random_mask(shape, seed=0, density=0.5):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < density


@pytest.mark.parametrize(
    "module",
    [
        nn.Linear(6, 4),
        nn.Conv1d(3, 4, 3),
        nn.Conv2d(3, 4, 3),
        nn.Conv3d(2, 3, 2),
        nn.Embedding(7, 5),
    ],
    ids=["linear", "conv1d", "conv2d", "conv3d", "embedding"],
)
def test_attach_zeroes_in_place_and_registers_a_bool_buffer(module):
    weight = module.weight
    before = weight.detach().clone()
    mask = random_mask(weight.shape)
    attach_mask(module, "weight", mask)
    assert module.weight is weight  # same Parameter: no reparametrisation
    assert (
        torch.equal(module.weight_sparsity_mask, mask)
        and module.weight_sparsity_mask.dtype == torch.bool
    )
    assert torch.equal(weight.detach(), before * mask)
    assert "weight_sparsity_mask" in module.state_dict()
    assert get_mask(module, "weight") is module.weight_sparsity_mask
    assert get_mask(module, "bias") is None


def test_any_parameter_by_name():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(5))

    model = nn.Sequential(Scaled(), nn.Linear(5, 2))
    apply_masks(model, {"0.scale": torch.tensor([True, False, True, False, True])})
    apply_masks(model, {"1.bias": torch.tensor([False, True])})
    assert model[0].scale.tolist() == [1, 0, 1, 0, 1]
    assert model[1].bias[0] == 0
    assert sorted(get_masks(model)) == ["0.scale", "1.bias"]


def test_st_masks_is_callable_and_returns_live_buffers():
    model = nn.Sequential(nn.Linear(4, 3))
    apply_masks(model, {"0.weight": random_mask((3, 4))})
    masks = sparse.masks(model)
    assert list(masks) == ["0.weight"] and masks["0.weight"] is model[0].weight_sparsity_mask


@pytest.mark.parametrize(
    "mask, error, match",
    [
        (
            torch.ones(4, 3, dtype=torch.bool),
            ValueError,
            r"has shape \(4, 3\), parameter has \(3, 4\)",
        ),
        (torch.ones(3, 4), TypeError, "must have dtype torch.bool, got torch.float32"),
        (torch.ones(3, 4, dtype=torch.uint8), TypeError, "dtype torch.bool"),
        ([[True] * 4] * 3, TypeError, r"must be a torch\.Tensor"),
    ],
)
def test_wrong_masks_raise_and_attach_nothing(mask, error, match):
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    good = torch.zeros(2, 3, dtype=torch.bool)
    with pytest.raises(error, match=match):
        apply_masks(model, {"1.weight": good, "0.weight": mask})  # all checked before any attach
    assert not get_masks(model)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_unknown_names_raise():
    model = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(ValueError, match="model has no module '5'"):
        apply_masks(model, {"5.weight": torch.ones(3, 4, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"model has no parameter '0\.gain'"):
        apply_masks(model, {"0.gain": torch.ones(3, 4, dtype=torch.bool)})
    with pytest.raises(ValueError, match="has no mask"):
        detach_mask(model[0], "weight")


def test_reattach_replaces_the_mask_and_zeroes_more():
    layer = nn.Linear(4, 4)
    first = random_mask((4, 4), 1)
    attach_mask(layer, "weight", first)
    second = first & random_mask((4, 4), 2)
    attach_mask(layer, "weight", second)
    assert torch.equal(layer.weight_sparsity_mask, second)
    assert bool((layer.weight[~second] == 0).all())
    assert [k for k in layer.state_dict() if k.endswith("_mask")] == ["weight_sparsity_mask"]


def test_mask_is_copied_not_aliased():
    layer = nn.Linear(4, 4)
    mask = random_mask((4, 4))
    attach_mask(layer, "weight", mask)
    mask.fill_(True)
    assert not layer.weight_sparsity_mask.all()


def test_remove_masks_keeps_zeros_and_gives_the_plain_state_dict():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    plain_keys = list(model.state_dict())
    sparse.prune(model, 0.8)
    zeros = {n: (p == 0).clone() for n, p in model.named_parameters()}
    remove_masks(model)
    assert list(model.state_dict()) == plain_keys
    assert not get_masks(model)
    assert all(torch.equal(p == 0, zeros[n]) for n, p in model.named_parameters())
    # hooks are gone too: a forward and a load do nothing special any more
    assert not model[0]._forward_pre_hooks and not model[0]._load_state_dict_post_hooks
    fresh = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    fresh.load_state_dict(model.state_dict())  # strict: the plain architecture
    assert torch.equal(fresh[2].weight, model[2].weight)


def test_masks_from_state_dict():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    sparse.prune(model, 0.5)
    found = masks_from_state_dict(model.state_dict())
    assert sorted(found) == ["0.weight", "1.weight"]
    assert all(torch.equal(found[n], m) for n, m in get_masks(model).items())
