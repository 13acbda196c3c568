import json
import os

import pytest
import torch
from torch import nn

from sparsetorch.checkpoint import CheckpointError, load, save
from sparsetorch.checkpoint.header import FORMAT_VERSION
from sparsetorch.checkpoint.tensor_codec import checksum
from sparsetorch.masking import apply_masks, get_masks
from tests.checkpoint.helpers import assert_bitwise, read_raw, write_raw


def _model(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8))
    apply_masks(model, {"0.weight": torch.rand(32, 64) < 0.1, "2.weight": torch.rand(8, 32) < 0.5})
    return model


@pytest.fixture
def saved(tmp_path):
    return save(_model(), tmp_path / "m.safetensors")


def _snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}, set(get_masks(model))


def _assert_unchanged(model, snap):
    assert_bitwise(model.state_dict(), snap[0])
    assert set(get_masks(model)) == snap[1]


def _data_offset(path, name):
    header_len = int.from_bytes(path.read_bytes()[:8], "little")
    header = json.loads(path.read_bytes()[8 : 8 + header_len])
    return 8 + header_len + header[name]["data_offsets"][0]


def test_truncated_file_names_the_tensor_and_leaves_the_model(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[:-10])
    target = _model(seed=1)
    snap = _snapshot(target)
    with pytest.raises(CheckpointError, match=r"truncated") as info:
        load(saved, target)
    assert "tensor '" in str(info.value)
    _assert_unchanged(target, snap)


def test_truncated_inside_the_header(saved):
    saved.write_bytes(saved.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated or corrupt header"):
        load(saved)
    saved.write_bytes(b"\x01\x02")
    with pytest.raises(CheckpointError, match="truncated"):
        load(saved)


def test_flipped_data_byte_is_a_checksum_error_naming_the_tensor(saved):
    offset = _data_offset(saved, "0.weight::values") + 5
    data = bytearray(saved.read_bytes())
    data[offset] ^= 0x10
    saved.write_bytes(bytes(data))
    target = _model(seed=1)
    snap = _snapshot(target)
    with pytest.raises(CheckpointError, match=r"tensor '0.weight': checksum mismatch"):
        load(saved, target)
    _assert_unchanged(target, snap)


def test_flipped_header_byte_is_caught(saved):
    data = bytearray(saved.read_bytes())
    at = data.index(b'\\"nnz\\":') + 8  # inside the sparsetorch metadata JSON (escaped)
    data[at] = ord("9") if data[at] != ord("9") else ord("8")
    saved.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        load(saved)


def test_wrong_checksum_in_metadata(saved):
    tensors, meta = read_raw(saved)
    meta["tensors"]["2.bias"]["crc32"] += 1
    write_raw(saved, tensors, meta)
    with pytest.raises(CheckpointError, match=r"tensor '2.bias': checksum mismatch"):
        load(saved)


def _recrc(tensors, meta, key):
    parts = {n.partition("::")[2]: t for n, t in tensors.items() if n.partition("::")[0] == key}
    meta["tensors"][key]["crc32"] = checksum(parts)


def test_indices_beyond_the_shape_are_rejected_even_with_a_valid_checksum(tmp_path):
    state = {"w": torch.zeros(100, 100)}
    state["w"][3, 4] = 1.0
    state["w"][50, 5] = 2.0
    path = save(state, tmp_path / "w.safetensors")
    tensors, meta = read_raw(path)
    assert meta["tensors"]["w"]["encoding"] == "delta16"
    tensors["w::delta"][1] = 60000  # 304 + 60001 > 10000 elements
    _recrc(tensors, meta, "w")
    write_raw(path, tensors, meta)
    with pytest.raises(CheckpointError, match=r"tensor 'w': delta16 indices reach position"):
        load(path)


def test_csr_column_beyond_the_row(tmp_path):
    gen = torch.Generator().manual_seed(0)
    keep = torch.rand(256, 144, generator=gen) < 0.05  # conv-like rows: uint8 column indices
    state = {"w": torch.ones(256, 144).masked_fill(~keep, 0)}
    path = save(state, tmp_path / "w.safetensors")
    tensors, meta = read_raw(path)
    assert meta["tensors"]["w"]["encoding"] == "csr"
    tensors["w::col"][0] = 150
    _recrc(tensors, meta, "w")
    write_raw(path, tensors, meta)
    with pytest.raises(CheckpointError, match=r"tensor 'w': csr column index 150 exceeds"):
        load(path)


def test_unknown_future_format_version(saved):
    tensors, meta = read_raw(saved)
    meta["format_version"] = FORMAT_VERSION + 1
    write_raw(saved, tensors, meta)
    with pytest.raises(CheckpointError, match=r"format version 2 .* upgrade sparsetorch"):
        load(saved)


def test_part_with_the_wrong_shape_or_dtype(saved):
    tensors, meta = read_raw(saved)
    tensors["0.weight::values"] = tensors["0.weight::values"][:-1].clone()
    write_raw(saved, tensors, meta)
    with pytest.raises(CheckpointError, match=r"tensor '0.weight': part '0.weight::values' is F32"):
        load(saved)


def test_unlisted_tensor_in_the_file(saved):
    tensors, meta = read_raw(saved)
    tensors["extra"] = torch.zeros(3)
    write_raw(saved, tensors, meta)
    with pytest.raises(CheckpointError, match=r"'extra' is in the file but not listed"):
        load(saved)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.append(nn.Linear(8, 2)), r"missing from the checkpoint: '3.bias', '3.weight'"),
        (lambda m: m.pop(2), r"not in the model: '2.bias', '2.weight', '2.weight_sparsity_mask'"),
        (lambda m: m.__setitem__(2, nn.Linear(32, 9)), r"tensor '2.weight' has shape \[8, 32\]"),
    ],
)
def test_state_dict_not_matching_the_model_leaves_it_as_it_was(saved, change, message):
    target = _model(seed=1)
    change(target)
    snap = _snapshot(target)
    with pytest.raises(CheckpointError, match=message):
        load(saved, target)
    _assert_unchanged(target, snap)


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)


def test_bad_arguments(tmp_path, saved):
    with pytest.raises(TypeError, match=r"nn\.Module or a state_dict"):
        save([1, 2], tmp_path / "x.safetensors")
    with pytest.raises(TypeError, match=r"state_dict\['a'\] must be a dense"):
        save({"a": 3}, tmp_path / "x.safetensors")
    with pytest.raises(TypeError, match=r"state_dict\['a'\] must be a dense"):
        save({"a": torch.eye(3).to_sparse()}, tmp_path / "x.safetensors")
    with pytest.raises(TypeError, match="complex64; supported"):
        save({"a": torch.zeros(2, dtype=torch.complex64)}, tmp_path / "x.safetensors")
    with pytest.raises(TypeError, match="meta device"):
        save({"a": torch.zeros(2, device="meta")}, tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match="without '::'"):
        save({"a::values": torch.zeros(2)}, tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match="is a directory"):
        save({"a": torch.zeros(2)}, tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save({"a": torch.zeros(2)}, tmp_path / "nope" / "x.safetensors")
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        load(tmp_path / "missing.safetensors")
    with pytest.raises(TypeError, match=r"floating torch\.dtype"):
        load(saved, dtype=torch.int32)
    with pytest.raises(ValueError, match="do not apply with model="):
        load(saved, _model(), dtype=torch.float16)
    with pytest.raises(ValueError, match="unknown format 'nope'; known:"):
        load(saved, as_format="nope")
    with pytest.raises(TypeError, match=r"model must be an nn\.Module"):
        load(saved, model={"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    path = save({"a": torch.ones(4)}, tmp_path / "m.safetensors")
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("sparsetorch.checkpoint.writer.save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        save({"a": torch.zeros(4)}, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.safetensors"]


def test_absurd_shapes_in_a_header_are_clean_errors(tmp_path):
    header = json.dumps({"x": {"dtype": "F32", "shape": [2**70], "data_offsets": [0, 4]}})
    header += " " * (-len(header) % 8)
    path = tmp_path / "x.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header.encode() + bytes(4))
    with pytest.raises(CheckpointError, match=r"tensor 'x': holds 4 bytes"):
        load(path)
