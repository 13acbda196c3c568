"""The package's layers: every import (at module level or inside a function) points to a lower
layer or stays inside its own area, so the package has no import cycles between areas and a
low-level import never drags in the runner, the CLI or the data sets."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

import sparsetorch

ROOT = pathlib.Path(sparsetorch.__file__).parent

# lowest first; an area may import its own modules and any area of a lower layer
LAYERS: list[set[str]] = [
    {"_registry", "_checks", "_files", "_lazy", "_eager_cache", "_warnings"},
    {"formats", "batches"},
    {"kernels", "selection"},
    {"sharding"},
    {"masking"},
    {"criteria", "patterns", "distributions", "schedules", "metrics", "model_report", "attention"},
    {"pruning", "checkpoint", "models", "data"},
    {"algorithms", "post_training", "deploy", "distributed", "accelerate"},
    {"experiments"},
    {"lottery"},
    {"cli"},
    {"__main__"},
]
RANK = {area: rank for rank, areas in enumerate(LAYERS) for area in areas}


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path) -> list[tuple[str, int]]:
    """(imported sparsetorch module, line) for every import in the file, nested ones too."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names]
            found += [(name, node.lineno) for name in names] or [(target, node.lineno)]
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
    return [(name, line) for name, line in found if name.startswith("sparsetorch.")]


def _area(dotted: str) -> str:
    return dotted.split(".")[1]


def _known_area(dotted: str) -> str | None:
    """The area of an imported name (``sparsetorch.prune`` the function -> its area)."""
    area = _area(dotted)
    return area if area in RANK else None


def test_every_area_has_a_layer():
    areas = {p.stem if p.is_file() else p.name for p in ROOT.iterdir()}
    areas = {a for a in areas if not a.startswith(("__pycache__", "py")) and a != "__init__"}
    assert areas - {"py"} <= set(RANK), sorted(areas - set(RANK))


def test_imports_point_down():
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        module = _module_name(path)
        if module == "sparsetorch":  # the package root resolves public names lazily
            continue
        here = _area(module)
        for target, line in _imports(path):
            there = _known_area(target)
            if there is None or there == here:
                continue
            if RANK[there] >= RANK[here]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} {here} -> {there} ({target})")
    assert not wrong, "imports that do not point to a lower layer:\n" + "\n".join(wrong)


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return {m for m in out.split() if m.startswith("sparsetorch")}


@pytest.mark.parametrize(
    ("statement", "absent"),
    [
        ("from sparsetorch import RigL", {"experiments", "data", "distributed", "cli", "lottery"}),
        ("import sparsetorch.algorithms.during", {"experiments", "data", "models", "cli"}),
        ("from sparsetorch import prune", {"algorithms", "experiments", "distributed", "data"}),
        ("import sparsetorch.masking", {"pruning", "criteria", "distributed", "experiments"}),
    ],
)
def test_low_layers_load_nothing_above_them(statement, absent):
    loaded = {_area(m) for m in _loaded_after(statement) if "." in m}
    assert not loaded & absent, sorted(loaded & absent)
