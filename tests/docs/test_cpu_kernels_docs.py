"""The Python example of docs/cpu_kernels.md runs (docs never rot)."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "cpu_kernels.md"


def test_python_block_of_the_cpu_kernels_docs_runs(capsys):
    (block,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    exec(compile(block, str(DOC), "exec"), {})
    out = capsys.readouterr().out
    assert "accelerated 2 Linear layer(s)" in out and "0: density" in out
