"""The N:M codec's ``cols`` view: a weight whose reduction axis is dim 0 (transformers'
Conv1D stores (in, out)) is N:M down its columns and stored with log2(M)-bit indices."""

import torch
from torch import nn

import sparsetorch as st
from sparsetorch.checkpoint import read_state, save
from sparsetorch.patterns import get as get_pattern
from tests.checkpoint.helpers import assert_bitwise, read_raw
from tests.masking.test_prunable_registry import Conv1D


def test_nm_down_the_columns_is_stored_as_nm_and_restored_bitwise(tmp_path):
    torch.manual_seed(0)
    w = torch.randn(64, 24)
    mask = get_pattern("2:4").along(0).mask(w.abs())  # (in=64, out=24), groups down dim 0
    state = {"c_attn.weight": w.masked_fill(~mask, 0), "c_attn.weight_mask": mask}
    path = save(state, tmp_path / "a.safetensors")
    tensors, meta = read_raw(path)
    entry = meta["tensors"]["c_attn.weight"]
    assert entry["encoding"] == "nm" and entry["params"] == {"n": 2, "m": 4, "view": "cols"}
    assert entry["pattern"] == "2:4"
    assert tensors["c_attn.weight::nm_index"].numel() == 64 * 24 // 2 * 2 // 8  # 2 bits each
    assert_bitwise(read_state(path)[0], state)


def test_a_pruned_conv1d_model_round_trips_through_st_save(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(Conv1D(32, 16), Conv1D(16, 32))
    st.prune(model, pattern="2:4")
    path = st.save(model, tmp_path / "m.safetensors")
    _, meta = read_raw(path)
    assert {meta["tensors"][f"{i}.weight"]["params"]["view"] for i in (0, 1)} == {"cols"}
    fresh = nn.Sequential(Conv1D(32, 16), Conv1D(16, 32))
    st.load(path, model=fresh)
    assert_bitwise(fresh.state_dict(), model.state_dict())
