"""The documentation site's home page example runs and prints the report it promises."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "index.md"


def test_home_page_example_runs(capsys):
    (block,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    namespace: dict = {}
    exec(compile(block, str(DOC), "exec"), namespace)
    st, model = namespace["st"], namespace["model"]
    assert abs(st.sparsity(model) - 0.9) < 1e-4
    out = capsys.readouterr().out
    assert "0.weight" in out and "2.weight" in out and "total" in out
