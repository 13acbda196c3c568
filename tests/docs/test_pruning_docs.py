"""Every ```python block of docs/pruning.md runs, in order, in one namespace (docs never rot)."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "pruning.md"


def test_python_blocks_of_the_pruning_docs_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 10
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{DOC}:block{i}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "sparsity must be in [0, 1), got 1.0" in out
    assert "unknown pattern 'dots'; known:" in out
