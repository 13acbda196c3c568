"""Every ```python block of docs/attention.md runs, in order, in one namespace (docs never rot),
and the printed output it shows is what the code prints."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "attention.md"


def test_python_blocks_of_the_attention_docs_run_and_print_what_the_docs_show(capsys):
    text = DOC.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 5
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{DOC}:block{i}", "exec"), namespace)
    out = capsys.readouterr().out
    for shown in re.findall(r"```text\n(.*?)```", text, flags=re.S):
        for line in shown.strip().splitlines():
            assert line in out
    assert "BlockLayout(n=4096, block=(128, 128), blocks=32x32: 31 full, 62 partial" in out
