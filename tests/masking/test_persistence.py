import copy
import io
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sparsetorch as sparse
from sparsetorch.masking import apply_masks, masks_from_state_dict


def make(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4))


def data():
    g = torch.Generator().manual_seed(5)
    return torch.randn(16, 12, generator=g), torch.randint(0, 4, (16,), generator=g)


def train(model, steps=20, params=None, opt=None):
    x, y = data()
    opt = opt or torch.optim.AdamW(params or model.parameters(), lr=0.05, weight_decay=0.1)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return opt


def step_without_forward(model):
    # the hardest case for enforcement: gradients from elsewhere, no forward hook has run
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    torch.optim.SGD(model.parameters(), lr=1.0).step()


def assert_enforced(model, masks):
    assert sorted(sparse.masks(model)) == sorted(masks)
    for name, mask in masks.items():
        assert torch.equal(sparse.masks(model)[name], mask), name
        assert bool((model.get_parameter(name)[~mask] == 0).all()), name


@pytest.fixture
def pruned():
    model = make()
    sparse.prune(model, 0.75)
    return model, {n: m.clone() for n, m in sparse.masks(model).items()}


def test_state_dict_round_trip_into_a_masked_model(pruned):
    model, masks = pruned
    train(model)
    other = make(1)
    sparse.prune(other, 0.75)  # different masks: the load brings the saved ones
    other.load_state_dict(model.state_dict())
    assert_enforced(other, masks)
    assert all(
        torch.equal(a, b) for a, b in zip(other.state_dict().values(), model.state_dict().values())
    )
    train(other)
    assert_enforced(other, masks)


def test_fresh_model_reloads_masks_from_a_state_dict(pruned):
    model, masks = pruned
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = make(2)
    apply_masks(fresh, masks_from_state_dict(state))
    fresh.load_state_dict(state)
    assert_enforced(fresh, masks)
    step_without_forward(fresh)
    assert_enforced(fresh, masks)


def test_loading_nonzero_weights_into_a_masked_model_rezeroes_them(pruned):
    model, masks = pruned
    state = {
        k: (torch.ones_like(v) if k.endswith("weight") else v)
        for k, v in model.state_dict().items()
    }
    model.load_state_dict(state)
    assert_enforced(model, masks)


def test_load_state_dict_assign_rebinds_new_parameters(pruned):
    model, masks = pruned
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(state, assign=True)
    step_without_forward(model)
    assert_enforced(model, masks)


def test_remove_masks_then_plain_architecture_loads_strictly(pruned):
    model, masks = pruned
    train(model)
    sparse.remove_masks(model)
    plain = make(3)
    plain.load_state_dict(model.state_dict())
    for name, mask in masks.items():
        assert bool((plain.get_parameter(name)[~mask] == 0).all())


def test_deepcopy_keeps_masks_and_enforcement(pruned):
    model, masks = pruned
    twin = copy.deepcopy(model)
    assert twin[0].weight_sparsity_mask is not model[0].weight_sparsity_mask
    assert_enforced(twin, masks)
    step_without_forward(twin)  # no forward ran on the copy: binding came with deepcopy
    assert_enforced(twin, masks)
    train(twin)
    assert_enforced(twin, masks)
    assert_enforced(model, masks)
    # the copy's masks are its own
    apply_masks(twin, {"0.weight": torch.zeros_like(masks["0.weight"])})
    assert torch.equal(model[0].weight_sparsity_mask, masks["0.weight"])
    step_without_forward(model)
    assert_enforced(model, masks)


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_pickled_whole_model_keeps_masks_and_enforcement(pruned, how):
    model, masks = pruned
    if how == "pickle":
        clone = pickle.loads(pickle.dumps(model))
    else:
        buffer = io.BytesIO()
        torch.save(model, buffer)
        buffer.seek(0)
        clone = torch.load(buffer, weights_only=False)
    step_without_forward(clone)
    assert_enforced(clone, masks)
    train(clone)
    assert_enforced(clone, masks)


@pytest.mark.parametrize("convert", ["double", "half", "bfloat16"])
def test_dtype_moves_keep_bool_masks_and_zeros(pruned, convert):
    model, masks = pruned
    getattr(model, convert)()
    assert all(m.dtype == torch.bool for m in sparse.masks(model).values())
    assert_enforced(model, masks)
    x, y = data()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(5):
        opt.zero_grad()
        F.cross_entropy(model(x.to(model[0].weight.dtype)).float(), y).backward()
        opt.step()
    assert_enforced(model, masks)


def test_to_device_cpu_keeps_identity(pruned):
    model, masks = pruned
    model.to("cpu")
    step_without_forward(model)
    assert_enforced(model, masks)


@pytest.mark.parametrize("copy_first", [False, True])
def test_torch_compile_aot_eager(pruned, copy_first):
    model, masks = pruned
    if copy_first:  # binding must already be there: the pre-hook does nothing while compiling
        model = copy.deepcopy(model)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager")
    train(compiled, steps=10, params=compiled.parameters())
    assert_enforced(model, masks)
    assert "_orig_mod.0.weight_sparsity_mask" in compiled.state_dict()


@pytest.mark.slow
def test_torch_compile_inductor(pruned):
    model, masks = pruned
    torch._dynamo.reset()
    compiled = torch.compile(model)
    x, _ = data()
    train(compiled, steps=5, params=compiled.parameters())
    assert_enforced(model, masks)
    with torch.no_grad():
        assert torch.allclose(compiled(x), model(x), atol=1e-5)
