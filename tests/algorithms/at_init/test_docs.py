"""docs/static_sparse.md: every ```python block runs and prints exactly the ```text block
that follows it."""

import contextlib
import io
import re
from pathlib import Path

import torch

DOC = Path(__file__).resolve().parents[3] / "docs" / "static_sparse.md"


def test_python_blocks_print_the_text_blocks_after_them():
    pairs = re.findall(r"```python\n(.*?)```\s*```text\n(.*?)```", DOC.read_text(), re.S)
    assert len(pairs) == 2
    namespace: dict = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for code, expected in pairs:
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                exec(compile(code, str(DOC), "exec"), namespace)
            assert buffer.getvalue() == expected
    finally:
        torch.set_num_threads(threads)
