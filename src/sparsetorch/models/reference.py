"""Your own model by reference: ``--model module:callable`` (or ``path/to/file.py:callable``).

The callable (an ``nn.Module`` class or a function returning one; ``callable`` may be dotted,
``module:Outer.build``) is called with the model options as keyword arguments, plus
``input_shape`` (one example's shape) and ``num_classes`` when its signature takes them.
A module name is imported with the current directory first on ``sys.path``; a ``.py`` path is
loaded from that file.

Security: this imports and runs the named code, as ``python -c "import module"`` would. Any
command that builds the model from hparams does so, also for a run directory or config file
you did not write (``train --config``, ``report``, ``export``, ``lottery``, ``load_run``): use
references only to code you trust.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn


def is_reference(name: str) -> bool:
    """True for ``module:callable`` (the built-in model names have no colon)."""
    return ":" in name


def split(reference: str) -> tuple[str, str]:
    module, _, attribute = reference.strip().rpartition(":")
    if not module or not attribute or not all(p.isidentifier() for p in attribute.split(".")):
        raise ValueError(
            f"model reference must be module:callable or path/to/file.py:callable, got "
            f"{reference!r}"
        )
    return module, attribute


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    name = "sparsetorch_user_" + re.sub(r"\W", "_", str(path.resolve()))
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # (pickling, dataclasses and typing look modules up there)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _import_module(name: str) -> Any:
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and name.startswith(exc.name):
            raise ValueError(
                f"cannot import module {name!r} for the model reference (not found from "
                f"{cwd} or sys.path): {exc}"
            ) from exc
        raise
    finally:
        if added:
            sys.path.remove(cwd)


def resolve(reference: str) -> Callable[..., Any]:
    """The callable named by ``reference`` (imports its module)."""
    module_name, attribute = split(reference)
    if module_name.endswith(".py"):
        module = _import_file(Path(module_name).expanduser())
    else:
        module = _import_module(module_name)
    try:
        found = functools.reduce(getattr, attribute.split("."), module)
    except AttributeError:
        raise ValueError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if not callable(found):
        raise TypeError(f"{reference!r} is a {type(found).__name__}, not a callable")
    return found


def _takes(signature: inspect.Signature | None, name: str) -> bool:
    if signature is None:
        return False
    params = signature.parameters.values()
    return name in signature.parameters or any(p.kind is p.VAR_KEYWORD for p in params)


def build(
    reference: str, input_shape: tuple[int, ...], num_classes: int, **options: Any
) -> nn.Module:
    """Call the referenced callable (see the module doc) and check it returns an nn.Module."""
    factory = resolve(reference)
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        signature = None
    kwargs = dict(options)
    for key, value in (("input_shape", tuple(input_shape)), ("num_classes", num_classes)):
        if key not in kwargs and _takes(signature, key):
            kwargs[key] = value
    model = factory(**kwargs)
    if not isinstance(model, nn.Module):
        raise TypeError(f"{reference!r} returned a {type(model).__name__}, not an nn.Module")
    return model
