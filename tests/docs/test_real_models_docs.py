"""Every ```python block of docs/real_models.md runs, in order, in one namespace (docs never
rot). The page builds Hugging Face models from tiny configs: skipped without transformers."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "real_models.md"


def test_python_blocks_of_the_real_models_docs_run():
    pytest.importorskip("transformers", reason="needs transformers (pip install 'sparsetorch[hf]')")
    from sparsetorch.masking import registered_kinds, unregister_prunable

    before = set(registered_kinds())
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 6
    namespace: dict = {}
    try:
        for i, block in enumerate(blocks):
            exec(compile(block, f"{DOC}:block{i}", "exec"), namespace)
    finally:
        for key in set(registered_kinds()) - before:  # the page registers a layer type
            unregister_prunable(key)
