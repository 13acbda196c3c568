"""Command-line flags generated from the hparams dataclasses, and the merge of a config file
with the flags given (flags win)."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from sparsetorch.experiments.hparams import GROUPS, Hparams, _default

_METAVARS = {int: "N", float: "X", str: "NAME", bool: "BOOL"}


def flag_name(f: dataclasses.Field) -> str:
    return f.metadata.get("flag", "--" + f.name.replace("_", "-"))


def parse_scalar(text: str) -> Any:
    """``KEY=VALUE`` values: int, float, true/false, none, else the string itself."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}") from None
    return key.strip(), parse_scalar(value)


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers separated by commas, got {text!r}"
        ) from None


def _optional(kind: type) -> Any:
    def parse(text: str) -> Any:
        if text.strip().lower() in ("none", "null"):
            return None
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {kind.__name__} or 'none', got {text!r}"
            ) from None

    parse.__name__ = kind.__name__
    return parse


def add_hparam_arguments(
    parser: argparse.ArgumentParser,
    groups: tuple[str, ...] = tuple(GROUPS),
    skip: tuple[str, ...] = (),
) -> None:
    """One flag per hparams field, in one argument group per hparams group. Defaults are
    suppressed so that :func:`hparams_from_args` knows which flags were given. ``groups`` and
    ``skip`` (``"group.field"`` names) leave out flags a command sets by itself (``sparsetorch
    lottery`` prunes by itself and takes --seeds)."""
    seen: set[str] = set()
    for group, group_cls in GROUPS.items():
        if group not in groups:
            continue
        arguments = parser.add_argument_group(f"{group} hparams")
        hints = typing.get_type_hints(group_cls)
        for f in dataclasses.fields(group_cls):
            if f"{group}.{f.name}" in skip:
                continue
            flag = flag_name(f)
            if flag in seen:
                raise RuntimeError(f"two hparams fields generate the flag {flag}")
            seen.add(flag)
            hint = hints[f.name]
            default = _default(f)
            shown = "" if default in (None, (), {}) else f" (default: {default})"
            kwargs: dict[str, Any] = {
                "dest": f"{group}.{f.name}",
                "default": argparse.SUPPRESS,
                "help": f.metadata["help"] + shown,
            }
            origin = typing.get_origin(hint)
            if hint is bool:  # --flag / --no-flag
                kwargs["action"] = argparse.BooleanOptionalAction
            elif origin is dict:
                kwargs.update(action="append", type=_key_value, metavar="KEY=VALUE")
            elif origin is tuple:
                kwargs.update(type=_int_list, metavar="N,N,...")
            else:
                args = [a for a in typing.get_args(hint) if a is not type(None)]
                kind = args[0] if args else hint
                kwargs["type"] = _optional(kind) if args else kind
                kwargs["metavar"] = f.metadata.get("metavar", _METAVARS[kind])
            arguments.add_argument(flag, **kwargs)


def given_hparams(args: argparse.Namespace) -> dict[str, Any]:
    """``{"group.field": value}`` for the hparams flags present on the command line."""
    return {k: v for k, v in vars(args).items() if k.partition(".")[0] in GROUPS and "." in k}


def hparams_from_args(args: argparse.Namespace, config: str | None = None) -> Hparams:
    """Defaults, then the config file (if any), then the flags given."""
    data = Hparams.load(config).to_dict() if config else Hparams().to_dict()
    given = given_hparams(args)
    if "training.epochs" in given and "training.steps" in given:
        raise ValueError("give --epochs or --steps, not both")
    if "training.epochs" in given:  # the flag must win over steps from a config file
        data["training"]["steps"] = None
    for key, value in given.items():
        group, name = key.split(".")
        if isinstance(value, list) and isinstance(data[group][name], dict):
            data[group][name] = {**data[group][name], **dict(value)}
        else:
            data[group][name] = value
    return Hparams.from_dict(data, where="command line").validate()
