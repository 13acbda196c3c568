"""Crafted checkpoint files: a header that expands to far more memory than the file holds, a
header nested deeper than Python's recursion limit, and a state_dict key that would shadow the
safetensors metadata. Each gets one CheckpointError (or a refusal at save time), never a
RecursionError, a MemoryError or a file that cannot be read back."""

import struct
import zlib

import pytest
import torch
from safetensors.torch import save_file

from sparsetorch.checkpoint import CheckpointError, load, read_state, report_file, save
from sparsetorch.checkpoint.header import MAX_EXPANSION, META_KEY, MIN_EXPANSION_BYTES
from sparsetorch.cli import main
from tests.checkpoint.helpers import read_raw, write_raw


def _bomb(tmp_path, shape=(100_000, 100_000)):
    """A ~400-byte file whose header claims an all-zero float32 tensor of ``shape``."""
    path = save({"w": torch.zeros(64, 64)}, tmp_path / "bomb.safetensors")
    tensors, meta = read_raw(path)
    meta["tensors"]["w"]["shape"] = list(shape)
    write_raw(path, tensors, meta)
    return path


def test_a_decompression_bomb_is_refused_before_allocating(tmp_path, monkeypatch):
    path = _bomb(tmp_path)
    assert path.stat().st_size < 500
    import sparsetorch.checkpoint.reader as reader

    decoded = []  # decoding is where the dense tensor would be allocated
    real = reader.decode_tensor
    monkeypatch.setattr(reader, "decode_tensor", lambda *a: decoded.append(a) or real(*a))
    with pytest.raises(CheckpointError, match=r"37\.3 GiB .* from a \d+-byte file") as info:
        load(path)
    assert "max_expansion=None" in str(info.value)
    with pytest.raises(CheckpointError, match="max_expansion"):
        read_state(path)
    assert decoded == []


def test_the_bound_is_a_ratio_of_the_file_size_with_a_floor(tmp_path):
    # all-zero tensors: stored as nothing; the floor lets small files hold them
    small = save({"w": torch.zeros(1024, 1024)}, tmp_path / "zeros.safetensors")  # 4 MiB
    assert torch.equal(load(small)["w"], torch.zeros(1024, 1024))
    side = int((MIN_EXPANSION_BYTES // 4) ** 0.5) + 64  # just over the floor
    path = _bomb(tmp_path, (side, side))
    size = path.stat().st_size
    assert side * side * 4 > max(MIN_EXPANSION_BYTES, MAX_EXPANSION * size)
    with pytest.raises(CheckpointError, match="max_expansion"):
        load(path)
    # the explicit override: a larger ratio, or no bound at all
    dense = load(path, max_expansion=None)["w"]
    assert dense.shape == (side, side) and not dense.any()
    ratio = side * side * 4 / size
    assert load(path, max_expansion=ratio + 1)["w"].shape == (side, side)
    with pytest.raises(CheckpointError, match="max_expansion"):
        load(path, max_expansion=ratio - 1)


def test_a_99_99_percent_sparse_model_loads_under_the_default_bound(tmp_path):
    gen = torch.Generator().manual_seed(0)
    mask = torch.rand(4096, 4096, generator=gen) < 1e-4  # 99.99% sparse: 80 MiB loaded
    state = {"w": torch.where(mask, torch.randn(4096, 4096, generator=gen), 0.0), "w_mask": mask}
    path = save(state, tmp_path / "sparse.safetensors")
    loaded_bytes = 4096 * 4096 * 5  # float32 weight + bool mask
    ratio = loaded_bytes / path.stat().st_size
    assert loaded_bytes > MIN_EXPANSION_BYTES and 1000 < ratio < MAX_EXPANSION
    loaded = load(path)
    assert torch.equal(loaded["w"], state["w"]) and torch.equal(loaded["w_mask"], mask)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), True, "10"])
def test_max_expansion_argument_is_checked(tmp_path, bad):
    path = save({"w": torch.ones(4)}, tmp_path / "m.safetensors")
    error = TypeError if isinstance(bad, bool | str) else ValueError
    with pytest.raises(error, match="max_expansion must be"):
        load(path, max_expansion=bad)


def test_report_warns_about_a_bomb(tmp_path, capsys):
    path = _bomb(tmp_path)
    text = report_file(path)
    assert "3725.3 GiB" in text or "37.3 GiB" in text
    last = text.splitlines()[-1]
    assert last.startswith("warning: ") and "load() refuses it" in last
    assert main(["report", str(path)]) == 0
    assert "warning: " in capsys.readouterr().out
    ordinary = save({"w": torch.ones(4)}, tmp_path / "m.safetensors")
    assert "warning" not in report_file(ordinary)


def _write_header(path, header: bytes):
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    return path


@pytest.mark.parametrize("depth", [5_000, 200_000])
def test_deeply_nested_header_is_a_checkpoint_error(tmp_path, capsys, depth):
    path = _write_header(tmp_path / "nested.safetensors", b"[" * depth + b"]" * depth)
    with pytest.raises(CheckpointError, match="nested too deeply"):
        load(path)
    with pytest.raises(CheckpointError, match="nested too deeply"):
        report_file(path)
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err
    assert "nested too deeply" in err and "Traceback" not in err


def test_deeply_nested_sparsetorch_metadata_is_a_checkpoint_error(tmp_path):
    path = save({"w": torch.ones(4)}, tmp_path / "m.safetensors")
    tensors, _ = read_raw(path)
    depth = 100_000
    text = '{"format_version": 1, "tensors": {}, "x": ' + "[" * depth + "]" * depth + "}"
    crc = f"{zlib.crc32(text.encode()):08x}"  # a valid checksum: the nesting is what is wrong
    save_file(tensors, str(path), metadata={META_KEY: f"{crc} {text}"})
    with pytest.raises(CheckpointError, match="nested too deeply"):
        load(path)


def test_the_metadata_key_is_refused_at_save_time(tmp_path):
    with pytest.raises(ValueError, match=r"__metadata__.* reserved"):
        save({"a": torch.ones(2), "__metadata__": torch.ones(2)}, tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []
