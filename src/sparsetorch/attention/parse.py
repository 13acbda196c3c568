"""Patterns from config strings: ``parse("causal() & (local(128) | strided(128))")``.

The grammar is the Python expression syntax of the patterns themselves — calls of the
registered constructors with int / None / list arguments, combined by ``|``, ``&``, ``~`` and
parentheses — read with :mod:`ast`, never ``eval``. ``repr(pattern)`` parses back to an equal
pattern.
"""

from __future__ import annotations

import ast
from typing import Any

from sparsetorch._registry import Registry
from sparsetorch.attention.pattern import AttentionPattern

ATTENTION_PATTERNS: Registry = Registry("attention pattern")


def register(name: str, constructor: Any) -> None:
    """Make ``name(...)`` usable in pattern strings."""
    ATTENTION_PATTERNS.register(name)(constructor)


def parse(spec: str | AttentionPattern) -> AttentionPattern:
    """The pattern a string names (an AttentionPattern is returned as is)."""
    if isinstance(spec, AttentionPattern):
        return spec
    if not isinstance(spec, str):
        raise TypeError(
            f"pattern must be a string or an AttentionPattern, got {type(spec).__name__}"
        )
    try:
        tree = ast.parse(spec.strip(), mode="eval")
        return _pattern(tree.body, spec)
    except SyntaxError as exc:
        raise ValueError(f"cannot parse attention pattern {_short(spec)}: {exc.msg}") from None
    except (RecursionError, MemoryError):  # Python's parser and _pattern recurse per level
        raise ValueError(
            f"cannot parse attention pattern {_short(spec)} ({len(spec)} characters): nested "
            "too deeply (combine fewer patterns per expression)"
        ) from None


def _short(spec: str, keep: int = 80) -> str:
    """``repr(spec)``, cut in the middle when long (errors should fit on a screen)."""
    if len(spec) <= keep:
        return repr(spec)
    return repr(spec[: keep // 2]) + " ... " + repr(spec[-keep // 2 :])


def _pattern(node: ast.AST, spec: str) -> AttentionPattern:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr | ast.BitAnd):
        left, right = _pattern(node.left, spec), _pattern(node.right, spec)
        return left | right if isinstance(node.op, ast.BitOr) else left & right
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Invert):
        return ~_pattern(node.operand, spec)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name = node.func.id
        if name not in ATTENTION_PATTERNS:
            raise ValueError(
                f"unknown attention pattern {name!r} in {spec!r}; known: {', '.join(ATTENTION_PATTERNS.names())}"
            )
        args = [_value(a, spec) for a in node.args]
        kwargs = {k.arg: _value(k.value, spec) for k in node.keywords if k.arg}
        try:
            return ATTENTION_PATTERNS.lookup(name)(*args, **kwargs)
        except TypeError as exc:  # missing or extra arguments, a number where a list goes
            raise ValueError(
                f"cannot parse attention pattern {_short(spec)}: {name}(...): {exc}"
            ) from None
    raise ValueError(
        f"cannot parse attention pattern {spec!r}: expected calls like local(64) combined "
        f"with |, & and ~"
    )


def _value(node: ast.AST, spec: str) -> Any:
    if isinstance(node, ast.Constant) and (node.value is None or type(node.value) is int):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _value(node.operand, spec)
        if type(value) is not int:
            raise ValueError(
                f"attention pattern arguments: only an int can be negated, in {spec!r}"
            )
        return -value
    if isinstance(node, ast.List | ast.Tuple):
        return [_value(e, spec) for e in node.elts]
    raise ValueError(f"attention pattern arguments must be ints, None or lists, in {spec!r}")
