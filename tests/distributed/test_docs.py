"""The script of docs/distributed.md runs as written on 2 CPU ranks under torchrun (slow:
a real launch), so the documented API never rots."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.distributed.torchrun import torchrun

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "distributed.md"


def test_doc_has_one_python_script_and_the_gpu_commands():
    text = DOC.read_text()
    assert len(re.findall(r"```python\n", text)) == 1
    for line in (
        "torchrun --nproc_per_node 2 benchmarks/distributed_gpu.py --mode ddp",
        "torchrun --nproc_per_node 2 benchmarks/distributed_gpu.py --mode fsdp",
        "pytest -m gpu tests/distributed",
    ):
        assert line in text


@pytest.mark.slow
def test_the_python_api_script_runs_on_two_ranks(tmp_path):
    (script,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    (tmp_path / "rigl_fsdp.py").write_text(script)
    meta_file = tmp_path / "rigl_ckpt" / "sparsetorch.json"

    def complete(stdout: str) -> bool:  # rank 0 printed its last line, the checkpoint is whole
        last = stdout.strip().splitlines()[-1:] or [""]
        return meta_file.is_file() and re.fullmatch(r"0\.\d+", last[0]) is not None

    done = torchrun(["rigl_fsdp.py"], tmp_path, complete)
    density = float(done.stdout.strip().splitlines()[-1])  # fc1's, printed by rank 0
    assert 0.0 < density < 0.1  # ERK gives the 784x300 layer less than the 10% average
    meta = json.loads(meta_file.read_text())
    assert meta["world_size"] == 2 and meta["extra"] == {"step": 40}
    assert meta["masks"] == ["fc1.weight", "fc2.weight", "fc3.weight"]
