"""Every ```python block of docs/oneshot.md runs, in order, in one namespace (docs never rot).
The Hugging Face block runs where transformers is installed."""

import importlib.util
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "oneshot.md"
HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None


def test_python_blocks_of_the_oneshot_docs_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 6
    namespace: dict = {}
    ran = 0
    for i, block in enumerate(blocks):
        if "import transformers" in block and not HAS_TRANSFORMERS:
            continue
        exec(compile(block, f"{DOC}:block{i}", "exec"), namespace)
        ran += 1
    out = capsys.readouterr().out
    assert "8 layers, density 0.500" in out
    assert "True" in out
    assert "['layers.0.weight', 'layers.1.weight', 'layers.2.weight']" in out
    assert "['layers.0', 'layers.1', 'layers.2']" in out
    mlp = [f"'blocks.{i}.mlp.{j}.weight'" for i in range(2) for j in (0, 2)]
    assert "[" + ", ".join(mlp) + "]" in out  # filter_fn kept the MLP layers only
    if HAS_TRANSFORMERS:
        assert ran == 6 and "(32, 96) True" in out
