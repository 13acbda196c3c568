"""docs/lottery.md's Python examples run as written."""

import re
from pathlib import Path

import torch

DOC = Path(__file__).resolve().parents[2] / "docs" / "lottery.md"


def test_python_blocks_of_docs_lottery_run(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for block in blocks:
            exec(compile(block, str(DOC), "exec"), {"tmp_dir": tmp_path})
    finally:
        torch.set_num_threads(threads)
    assert (next(tmp_path.glob("lottery-*")) / "lottery.png").is_file()
