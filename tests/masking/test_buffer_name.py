"""The masks' buffer name never collides with torch.nn.utils.prune's, models pruned with torch's
utility are taken over (or refused clearly), and state dicts, checkpoints and DCP directories
written with the old ``<param>_mask`` name still load."""

import json

import pytest
import torch
import torch.nn.functional as F
import torch.nn.utils.prune as torch_prune
from torch import nn

import sparsetorch as st
from sparsetorch.masking import (
    LEGACY_SUFFIX,
    SUFFIX,
    apply_masks,
    attach_mask,
    mask_owner,
    masks_from_state_dict,
    migrate_state_dict,
    take_over_torch_pruning,
)


def make(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4))


def data():
    g = torch.Generator().manual_seed(5)
    return torch.randn(16, 12, generator=g), torch.randint(0, 4, (16,), generator=g)


def train(model, optimizer, steps=15):
    x, y = data()
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()


def legacy(state):
    """A state dict as sparsetorch wrote it before: masks under ``<param>_mask``."""
    return {k.replace(SUFFIX, LEGACY_SUFFIX): v for k, v in state.items()}


def test_buffer_name_is_not_torch_prunes():
    model = make()
    st.prune(model, 0.5)
    assert SUFFIX == "_sparsity_mask"
    assert [k for k in model.state_dict() if k.endswith("mask")] == [
        "0.weight_sparsity_mask",
        "2.weight_sparsity_mask",
    ]
    assert not hasattr(model[0], "weight_mask")


def test_torch_prune_on_our_model_keeps_our_mask_and_both_are_enforced():
    model = make()
    st.prune(model, 0.75)
    ours = st.masks(model)["0.weight"].clone()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    torch_prune.random_unstructured(model[0], "weight", amount=0.5)  # mostly other positions
    theirs = model[0].weight_mask.clone()
    assert torch.equal(model[0].weight_sparsity_mask, ours)  # not overwritten
    assert theirs.dtype == torch.float32
    train(model, optimizer)
    # our pruned positions stay zero in the trained values, torch's in the effective weight
    assert bool((model[0].weight_orig[~ours] == 0).all())
    assert bool((model[0].weight[theirs == 0] == 0).all())
    # st.prune takes it over: what either pruned stays pruned, in one mask of ours
    st.prune(model, 0.9)
    assert "weight_orig" not in dict(model[0].named_parameters())
    assert not hasattr(model[0], "weight_mask")
    mask = st.masks(model)["0.weight"]
    assert not bool((mask & ~ours).any()) and not bool((mask & (theirs == 0)).any())
    assert bool((model[0].weight[~mask] == 0).all())


def test_st_prune_takes_over_a_torch_pruned_model():
    model = make()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    weight = model[0].weight  # the Parameter object an optimizer holds
    torch_prune.l1_unstructured(model[0], "weight", amount=0.6)
    torch_prune.l1_unstructured(model[0], "weight", amount=0.5)  # a PruningContainer
    theirs = model[0].weight_mask.clone()
    effective = model[0].weight.detach().clone()  # weight_orig * weight_mask
    sparse_before = int((theirs == 0).sum())
    assert sparse_before == round(0.6 * 192) + round(0.5 * (192 - round(0.6 * 192)))
    st.prune(model, 0.7)  # this skipped layer 0 silently when the buffer names collided
    masks = st.masks(model)
    assert sorted(masks) == ["0.weight", "2.weight"]  # the torch-pruned layer is not skipped
    assert not bool((masks["0.weight"] & (theirs == 0)).any())  # torch's pruning stays
    kept = sum(int(m.sum()) for m in masks.values())
    assert kept == round(0.3 * (192 + 64))
    assert model[0].weight is weight  # the optimizer still holds the trained parameter
    assert torch.equal(model[0].weight[masks["0.weight"]], effective[masks["0.weight"]])
    assert not model[0]._forward_pre_hooks or not any(
        isinstance(h, torch_prune.BasePruningMethod) for h in model[0]._forward_pre_hooks.values()
    )
    assert set(model.state_dict()) == {
        "0.weight", "0.bias", "0.weight_sparsity_mask", "2.weight", "2.bias",
        "2.weight_sparsity_mask",
    }  # fmt: skip
    train(model, optimizer)
    assert bool((model[0].weight[~masks["0.weight"]] == 0).all())


def test_take_over_returns_names_and_keeps_torch_masks_exactly():
    model = make()
    torch_prune.random_unstructured(model[2], "weight", amount=0.25)
    theirs = model[2].weight_mask.bool()
    assert take_over_torch_pruning(model) == ["2.weight"]
    assert torch.equal(st.masks(model)["2.weight"], theirs)
    assert take_over_torch_pruning(model) == []


def test_refused_clearly_where_not_taken_over():
    model = make()
    torch_prune.l1_unstructured(model[0], "weight", amount=0.5)
    with pytest.raises(ValueError, match=r"\['0.weight'\] are pruned by torch.nn.utils.prune"):
        st.compute_masks(model, 0.5)
    with pytest.raises(ValueError, match="take_over_torch_pruning"):
        attach_mask(model[0], "weight", torch.ones(16, 12, dtype=torch.bool))


def test_rigl_takes_over_torch_pruning():
    model = make()
    layers = [(model[0], "weight"), (model[2], "weight")]
    torch_prune.global_unstructured(layers, torch_prune.L1Unstructured, amount=0.9)
    theirs = {f"{i}.weight": model[i].weight_mask.bool() for i in (0, 2)}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    st.RigL(model, optimizer, total_steps=10, sparsity=0.9, distribution="global", seed=0)
    assert "weight_orig" not in model[0]._parameters
    for name, mask in theirs.items():  # torch's masks are RigL's starting masks
        assert torch.equal(st.masks(model)[name], mask), name


def test_mask_owner_tells_masks_from_other_bool_and_float_buffers():
    state = {
        "fc.weight": torch.zeros(3, 4),
        "fc.weight_sparsity_mask": torch.ones(3, 4, dtype=torch.bool),
        "old.weight": torch.zeros(2, 2),
        "old.weight_mask": torch.ones(2, 2, dtype=torch.bool),  # sparsetorch's old name
        "tp.weight_orig": torch.zeros(2, 2),
        "tp.weight_mask": torch.ones(2, 2),  # torch.nn.utils.prune's float mask
        "attn.causal_mask": torch.ones(5, 5, dtype=torch.bool),  # a model's own buffer
        "attn": torch.zeros(5),
        "attn_mask": torch.ones(5, 5, dtype=torch.bool),  # shaped unlike `attn`
    }
    owners = {k: mask_owner(k, state) for k in state}
    assert {k: v for k, v in owners.items() if v} == {
        "fc.weight_sparsity_mask": "fc.weight",
        "old.weight_mask": "old.weight",
    }
    assert sorted(masks_from_state_dict(state)) == ["fc.weight", "old.weight"]
    migrated = migrate_state_dict(state)
    assert list(migrated) == [k if k != "old.weight_mask" else "old.weight_sparsity_mask"
                              for k in state]  # fmt: skip
    assert migrated["old.weight_sparsity_mask"] is state["old.weight_mask"]


def old_state():
    model = make()
    st.prune(model, 0.7)
    train(model, torch.optim.Adam(model.parameters(), lr=0.05))
    return model, legacy(model.state_dict())


def test_old_state_dict_loads_into_a_masked_model_and_a_fresh_one():
    model, old = old_state()
    assert "0.weight_mask" in old
    other = make(1)
    st.prune(other, 0.7)  # other masks: the load brings the saved ones (pre-hook renames)
    other.load_state_dict(old)
    assert all(
        torch.equal(a, b) for a, b in zip(other.state_dict().values(), model.state_dict().values())
    )
    fresh = make(2)
    apply_masks(fresh, masks_from_state_dict(old))
    fresh.load_state_dict(migrate_state_dict(old))
    for name, mask in st.masks(model).items():
        assert torch.equal(st.masks(fresh)[name], mask)
    assert old["0.weight_mask"].dtype == torch.bool  # the caller's dict is untouched
    assert "0.weight_sparsity_mask" not in old


def test_old_safetensors_checkpoint_loads(tmp_path):
    model, old = old_state()
    path = st.save(old, tmp_path / "old.safetensors")  # what sparsetorch wrote before
    fresh = make(3)
    st.load(path, fresh)
    assert set(fresh.state_dict()) == set(model.state_dict())
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_deepcopy_keeps_the_migrating_load_hook():
    import copy

    model, old = old_state()
    twin = copy.deepcopy(model)
    twin.load_state_dict(old)
    assert torch.equal(twin[0].weight_sparsity_mask, model[0].weight_sparsity_mask)
    st.remove_masks(twin)
    assert not twin[0]._load_state_dict_pre_hooks


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")
def test_old_dcp_checkpoint_loads(tmp_path):
    dcp = pytest.importorskip("torch.distributed.checkpoint")
    model, old = old_state()
    dcp.save({"model": old}, checkpoint_id=str(tmp_path))
    meta = {
        "format": 1,
        "world_size": 1,
        "optimizer": False,
        "masks": ["0.weight", "2.weight"],
        "extra": {"step": 3},
    }  # fmt: skip  (no mask_suffix: written before it existed)
    (tmp_path / "sparsetorch.json").write_text(json.dumps(meta))
    fresh = make(4)
    assert st.distributed.load_checkpoint(tmp_path, fresh) == {"step": 3}
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    # and a checkpoint written now records its suffix and loads back
    st.distributed.save_checkpoint(tmp_path / "new", fresh)
    assert json.loads((tmp_path / "new" / "sparsetorch.json").read_text())["mask_suffix"] == SUFFIX
    again = make(5)
    st.distributed.load_checkpoint(tmp_path / "new", again)
    assert torch.equal(again[2].weight_sparsity_mask, model[2].weight_sparsity_mask)
