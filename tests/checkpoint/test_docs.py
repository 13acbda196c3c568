"""The code in docs/checkpoints.md runs (docs never rot)."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "checkpoints.md"


def test_python_blocks_of_the_checkpoint_docs_run(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), {})
    assert "sparsetorch checkpoint format 1" in capsys.readouterr().out
