import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file
from torch import nn

import sparsetorch
from sparsetorch.checkpoint import load, read_state, save
from sparsetorch.masking import apply_masks, attach_mask, get_masks
from tests.checkpoint.helpers import PATTERNS, assert_bitwise, bits, make_mask, masked_weight

DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _state(pattern, dtype, density, seed, shape=(16, 32)):
    gen = torch.Generator().manual_seed(seed)
    mask = make_mask(shape, pattern, density, gen)
    return {
        "layer.weight": masked_weight(mask, dtype, gen),
        "layer.bias": torch.randn(shape[0], generator=gen).to(dtype),
        "layer.weight_sparsity_mask": mask,
    }


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    pattern=st.sampled_from(PATTERNS),
    dtype=st.sampled_from(DTYPES),
    density=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
    shape=st.sampled_from([(16, 32), (8, 4, 2, 2), (32, 8)]),
)
def test_bitwise_round_trip_every_pattern_and_dtype(tmp_path, pattern, dtype, density, seed, shape):
    state = _state(pattern, dtype, density, seed, shape)
    path = save(state, tmp_path / "m.safetensors")
    assert_bitwise(load(path), state)


@pytest.mark.parametrize("dtype", DTYPES)
def test_unmasked_pruned_tensor_keeps_signed_zero_and_nan_payloads(tmp_path, dtype):
    t = torch.zeros(64, 64, dtype=dtype)
    t[0, :5] = torch.tensor([1.5, -0.0, float("nan"), float("-inf"), 3.0]).to(dtype)
    weird_nan = bits(t.clone())
    weird_nan[1, 7] = -1  # all ones: a NaN with a non-canonical payload
    t = weird_nan.view(dtype)
    state = {"w": t}
    load_back = load(save(state, tmp_path / "x.safetensors"))
    assert_bitwise(load_back, state)


def test_other_dtypes_and_shapes(tmp_path):
    gen = torch.Generator().manual_seed(0)
    state = {
        "f64": torch.randn(40, 40, dtype=torch.float64, generator=gen).masked_fill(
            torch.rand(40, 40, generator=gen) < 0.9, 0
        ),
        "int": torch.randint(0, 3, (100,), generator=gen) * (torch.rand(100, generator=gen) < 0.1),
        "int8": torch.randint(-5, 5, (50, 8), generator=gen, dtype=torch.int8),
        "flags": torch.rand(1000, generator=gen) < 0.02,
        "scalar": torch.tensor(0.0),
        "count": torch.tensor(7),
        "empty": torch.zeros(0, 3),
        "noncontig": torch.randn(8, 16, generator=gen).t(),
    }
    if hasattr(torch, "float8_e4m3fn"):
        f8 = torch.randn(32, 32, generator=gen).to(torch.float8_e4m3fn)
        state["f8"] = f8.view(torch.uint8).masked_fill(torch.rand(32, 32) < 0.8, 0).view(f8.dtype)
    back = load(save(state, tmp_path / "x.safetensors"))
    assert_bitwise(back, {k: v.contiguous() for k, v in state.items()})


def test_sparse_file_is_smaller_and_the_same_bytes_every_time(tmp_path):
    state = _state("unstructured", torch.float32, 0.1, 0, shape=(256, 256))
    dense = tmp_path / "dense.safetensors"
    save_file({k: v for k, v in state.items() if not k.endswith("_mask")}, str(dense))
    a = save(state, tmp_path / "a.safetensors")
    b = save(state, tmp_path / "b.safetensors")
    assert a.read_bytes() == b.read_bytes()
    # values 0.1 * 4 B + bitmask 1/8 B per element vs 4 B: ~0.13x (+ header)
    assert a.stat().st_size < 0.15 * dense.stat().st_size


def test_two_four_fp16_stores_half_the_values_and_two_bit_indices(tmp_path):
    state = _state("2:4", torch.float16, 0.5, 0, shape=(256, 256))
    path = save(state, tmp_path / "a.safetensors")
    raw = read_state(path)[0]
    assert_bitwise(raw, state)
    numel = 256 * 256
    from tests.checkpoint.helpers import read_raw

    tensors, meta = read_raw(path)
    assert meta["tensors"]["layer.weight"]["encoding"] == "nm"
    assert tensors["layer.weight::values"].numel() == numel // 2
    assert tensors["layer.weight::nm_index"].numel() == numel // 2 * 2 // 8
    assert meta["tensors"]["layer.weight_sparsity_mask"] == {
        "encoding": "mask_of",
        "source": "layer.weight",
        "dtype": "bool",
        "shape": [256, 256],
    }


def test_mask_with_nonzeros_outside_is_stored_on_its_own(tmp_path):
    mask = torch.rand(32, 32) < 0.5
    w = torch.randn(32, 32)  # not zero where pruned: not a consistent masked weight
    state = {"w": w, "w_mask": mask}
    path = save(state, tmp_path / "x.safetensors")
    assert_bitwise(load(path), state)
    from tests.checkpoint.helpers import read_raw

    _, meta = read_raw(path)
    assert meta["tensors"]["w"]["encoding"] == "dense"
    assert meta["tensors"]["w_mask"]["encoding"] != "mask_of"


def test_tied_weights_are_stored_once_and_stay_tied(tmp_path):
    emb = nn.Embedding(100, 32)
    head = nn.Linear(32, 100, bias=False)
    head.weight = emb.weight
    model = nn.ModuleDict({"emb": emb, "head": head})
    attach_mask(emb, "weight", torch.rand(100, 32) < 0.2)
    path = save(model, tmp_path / "tied.safetensors")
    state = load(path)
    assert_bitwise(state, model.state_dict())
    assert state["head.weight"] is state["emb.weight"]


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 10), nn.BatchNorm1d(10))


def _prune(model, density=0.3, seed=1):
    gen = torch.Generator().manual_seed(seed)
    masks = {
        name: torch.rand(p.shape, generator=gen) < density
        for name, p in model.named_parameters()
        if name.endswith("weight") and p.dim() == 2
    }
    return apply_masks(model, masks)


def test_load_into_a_fresh_model_restores_weights_and_masks(tmp_path):
    model = _prune(_mlp())
    path = save(model, tmp_path / "m.safetensors")
    fresh = _mlp(seed=5)
    assert load(path, fresh) is fresh
    assert_bitwise(fresh.state_dict(), model.state_dict())
    assert set(get_masks(fresh)) == {"0.weight", "2.weight"}
    # masks are live: an optimizer step keeps pruned weights at zero
    opt = torch.optim.SGD(fresh.parameters(), lr=0.1)
    fresh.train()
    fresh(torch.randn(4, 20)).sum().backward()
    opt.step()
    assert (fresh[0].weight[~get_masks(fresh)["0.weight"]] == 0).all()


def test_load_replaces_and_removes_masks_of_the_target_model(tmp_path):
    source = _mlp()
    apply_masks(source, {"0.weight": torch.rand(30, 20) < 0.5})
    path = save(source, tmp_path / "m.safetensors")
    target = _prune(_mlp(seed=3), seed=9)  # masks on 0.weight and 2.weight
    load(path, target)
    assert set(get_masks(target)) == {"0.weight"}
    assert_bitwise(target.state_dict(), source.state_dict())


def test_plain_model_checkpoint_and_plain_safetensors_files(tmp_path):
    model = _mlp()
    path = save(model, tmp_path / "plain.safetensors")
    assert_bitwise(load(path), model.state_dict())
    other = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(other))
    fresh = _mlp(seed=4)
    load(other, fresh)
    assert_bitwise(fresh.state_dict(), model.state_dict())


def test_dtype_cast_on_load(tmp_path):
    state = _state("unstructured", torch.float32, 0.3, 0)
    back = load(save(state, tmp_path / "m.safetensors"), dtype=torch.bfloat16)
    assert back["layer.weight"].dtype == torch.bfloat16
    assert back["layer.weight_sparsity_mask"].dtype == torch.bool
    assert torch.equal(back["layer.weight"], state["layer.weight"].to(torch.bfloat16))


def test_as_format_csr_matches_the_formats_package(tmp_path):
    state = _state("unstructured", torch.float32, 0.3, 0)
    state["conv"] = torch.zeros(4, 2, 3, 3)
    back = load(save(state, tmp_path / "m.safetensors"), as_format="csr")
    csr = back["layer.weight"]
    assert isinstance(csr, sparsetorch.formats.CSR)
    expected = sparsetorch.formats.CSR.from_dense(state["layer.weight"])
    for name, array in expected.arrays().items():
        assert torch.equal(csr.arrays()[name], array), name
    assert torch.equal(csr.to_dense(), state["layer.weight"])
    assert isinstance(back["layer.bias"], torch.Tensor)  # dense entries stay dense
    assert back["conv"].shape == (4, 2, 3, 3)  # not 2-D: stays dense


def test_load_file_of_our_checkpoint_reads_dense_entries(tmp_path):
    """Users without sparsetorch can still read dense tensors with plain safetensors."""
    state = _state("unstructured", torch.float32, 0.1, 0)
    raw = load_file(str(save(state, tmp_path / "m.safetensors")))
    assert torch.equal(raw["layer.bias"], state["layer.bias"])
    nnz = int(state["layer.weight_sparsity_mask"].sum())
    assert raw["layer.weight::values"].shape == (nnz,)


def test_size_bound_matches_the_bitmask_arithmetic(tmp_path):
    numel = 512 * 512
    state = _state("unstructured", torch.float32, 0.1, 3, shape=(512, 512))
    path = save(state, tmp_path / "m.safetensors")
    nnz = int(state["layer.weight_sparsity_mask"].sum())
    payload = nnz * 4 + math.ceil(numel / 8) + 512 * 4  # values + bitmask + dense bias
    assert payload <= path.stat().st_size < payload + 4096  # header is small
