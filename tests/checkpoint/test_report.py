import torch
from safetensors.torch import save_file

from sparsetorch.checkpoint import report_file, save
from tests.checkpoint.helpers import make_mask, masked_weight


def _rows(text: str) -> dict[str, list[str]]:
    lines = text.splitlines()
    return {line.split()[0]: line.split() for line in lines[3:] if not line.startswith("-")}


def test_report_rows_are_exact(tmp_path):
    gen = torch.Generator().manual_seed(0)
    mask = make_mask((64, 64), "2:4", 0.5, gen)
    state = {
        "w": masked_weight(mask, torch.float16, gen),
        "w_mask": mask,
        "b": torch.ones(64),
        "alias": None,
    }
    state["alias"] = state["b"]
    path = save(state, tmp_path / "m.safetensors")
    text = report_file(path)
    assert text.splitlines()[0].startswith("m.safetensors: sparsetorch checkpoint format 1")
    assert text.splitlines()[1].split() == [
        "tensor", "shape", "dtype", "density", "pattern", "encoding", "stored", "dense"
    ]  # fmt: skip
    rows = _rows(text)
    # 2048 fp16 values + 2048 two-bit indices = 4096 + 512 bytes
    assert rows["w"] == ["w", "64x64", "float16", "0.500", "2:4", "nm", "4.5", "KiB", "8.0", "KiB"]
    assert rows["w_mask"] == [
        "w_mask", "64x64", "bool", "0.500", "2:4", "kept", "positions", "of", "w", "0", "B",
        "4.0", "KiB",
    ]  # fmt: skip
    assert rows["b"] == ["b", "64", "float32", "1.000", "dense", "dense", "256", "B", "256", "B"]
    assert rows["alias"][5:8] == ["alias", "of", "b"]
    assert rows["total"] == ["total", "4.8", "KiB", "12.2", "KiB"]
    size = path.stat().st_size
    assert text.splitlines()[-1] == (
        f"file: {size} bytes (header included) = {size / (8192 + 4096 + 256):.3f}x of the "
        "tensors' dense bytes"
    )


def test_report_reads_only_the_header(tmp_path):
    path = save({"w": torch.ones(100, 100)}, tmp_path / "m.safetensors")
    before = report_file(path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # corrupt the data region: load would fail, the report does not look
    path.write_bytes(bytes(data))
    assert report_file(path) == before


def test_report_of_a_plain_safetensors_file(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.tensor([[0.0, 1.0], [0.0, 0.0]])}, str(path))
    text = report_file(path)
    assert "plain safetensors file" in text.splitlines()[0]
    assert _rows(text)["w"] == ["w", "2x2", "float32", "0.250", "-", "dense", "16", "B", "16", "B"]
