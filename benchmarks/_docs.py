"""Shared by the benchmark scripts: write one "## <section>" of docs/benchmarks.md."""

from __future__ import annotations

import re
from pathlib import Path


def write_section(section: str, text: str, path: Path) -> None:
    """Replace the "## <section>" of ``path`` (or append it), leaving the others alone."""
    doc = path.read_text()
    pattern = re.compile(rf"^## {re.escape(section)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(doc):
        doc = pattern.sub(lambda _: text + "\n", doc, count=1)
    else:
        doc = doc.rstrip("\n") + "\n\n" + text
    path.write_text(doc.rstrip("\n") + "\n")
