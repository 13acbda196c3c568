"""docs/dynamic_sparse.md: every ```python block runs, and prints what its comments say."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[3] / "docs" / "dynamic_sparse.md"


def expected_outputs(code: str) -> list[str]:
    """The output each ``print(...)`` line announces: its trailing comment, or a next line
    that is only a comment."""
    lines = code.splitlines()
    out = []
    for i, line in enumerate(lines):
        if not line.startswith("print("):
            continue
        comment = line.partition(")  #")[2] or line.partition(")   #")[2]
        if not comment and i + 1 < len(lines) and lines[i + 1].startswith("# "):
            comment = lines[i + 1][1:]
        out.append(comment.split("(")[0].strip())
    return out


def test_python_blocks_run_and_print_what_they_say():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 3
    namespace: dict = {}
    for code in blocks:
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            exec(compile(code, str(DOC), "exec"), namespace)
        assert buffer.getvalue().splitlines() == expected_outputs(code)
