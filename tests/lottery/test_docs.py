"""docs/lottery.md's Python examples run as written: copied into a fresh namespace and run
in an empty directory, as a reader would paste them (nothing defined for them beforehand)."""

import re
from pathlib import Path

import torch

DOC = Path(__file__).resolve().parents[2] / "docs" / "lottery.md"


def test_python_blocks_of_docs_lottery_run(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for block in blocks:
            exec(compile(block, str(DOC), "exec"), {})
    finally:
        torch.set_num_threads(threads)
    (lottery_dir,) = (tmp_path / "runs").glob("lottery-lenet300-*")
    assert (lottery_dir / "lottery.png").is_file() and (lottery_dir / "lottery.md").is_file()
    assert "ticket" in capsys.readouterr().out
