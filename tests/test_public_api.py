"""The public surface: plain functions, classes and subpackages that a type checker can follow
from ``import sparsetorch as st`` (the ``TYPE_CHECKING`` imports name the same objects as the
lazy table), and a ``py.typed`` marker."""

from __future__ import annotations

import ast
import importlib
import inspect
import pathlib
import types

import pytest

import sparsetorch as st

ROOT = pathlib.Path(st.__file__).parent


def _type_checking_imports() -> dict[str, tuple[str, str]]:
    """``{public name: (module, attribute)}`` from the ``if TYPE_CHECKING:`` block."""
    tree = ast.parse((ROOT / "__init__.py").read_text())
    (block,) = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
    ]
    out = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom)
        for alias in node.names:
            out[alias.asname or alias.name] = (node.module, alias.name)
    return out


def test_all_lists_every_lazy_name():
    assert sorted(st.__all__) == sorted(["__version__", *st._LAZY])
    assert set(dir(st)) >= set(st.__all__)


def test_type_checking_imports_name_the_same_objects():
    imports = _type_checking_imports()
    assert set(imports) == set(st._LAZY)
    for name, (module, attr) in imports.items():
        value = getattr(importlib.import_module(module), attr)
        assert getattr(st, name) is value, name


@pytest.mark.parametrize("name", ["prune", "masks", "report", "sparsity", "sparsify_", "save"])
def test_verbs_are_plain_functions(name):
    value = getattr(st, name)
    assert inspect.isfunction(value) and not isinstance(value, types.ModuleType)


def test_importing_the_implementing_modules_does_not_shadow_the_verbs():
    import sparsetorch.masking
    import sparsetorch.model_report
    import sparsetorch.pruning  # noqa: F401

    assert inspect.isfunction(st.prune) and inspect.isfunction(st.masks)
    assert inspect.isfunction(st.report)
    assert st.prune.__doc__.startswith("Prune ``model`` once")


def test_package_is_marked_typed():
    assert (ROOT / "py.typed").is_file()
    pyproject = (ROOT.parent.parent / "pyproject.toml").read_text()
    assert 'sparsetorch = ["py.typed"]' in pyproject


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        st.nope
