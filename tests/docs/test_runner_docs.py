"""Every ```python block of docs/runner.md runs, in order, in one namespace (docs never rot)."""

import re
from pathlib import Path

import torch

DOC = Path(__file__).resolve().parents[2] / "docs" / "runner.md"


def test_python_blocks_of_the_runner_docs_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the examples write config.yaml and runs/
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
        assert len(blocks) == 5
        namespace: dict = {}
        for i, block in enumerate(blocks):
            exec(compile(block, f"{DOC}:block{i}", "exec"), namespace)
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "lenet300 on digits (dense, sparsity 0.000): test acc" in out
    assert "(dense, sparsity 0.800)" in out
    assert "mlp on pairs (dense, sparsity 0.000)" in out
    assert (tmp_path / "config.yaml").is_file() and (tmp_path / "runs" / "imp" / "level1").is_dir()
