"""Command-line flags generated from the hparams dataclasses and from the algorithms' config
dataclasses (one flag per method option: ``--delta-t``, ``--batches``, ...), and the merge of a
config file with the flags given (flags win)."""

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


def _pair(metavar: str) -> Any:
    """A ``KEY=VALUE`` parser whose error names the flag's own form (``NAME=RATE``)."""

    def parse(text: str) -> tuple[str, Any]:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"expected {metavar}, got {text!r}")
        return key.strip(), parse_scalar(value)

    return parse


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
            if f.metadata.get("method_options"):
                _add_method_options(arguments, f"{group}.{f.name}", seen)
                continue
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
                kwargs.update(action="append", type=_pair("KEY=VALUE"), metavar="KEY=VALUE")
            elif origin is tuple:
                kwargs.update(type=_int_list, metavar="N,N,...")
            else:
                args = [a for a in typing.get_args(hint) if a is not type(None)]
                kind = args[0] if args else hint
                kwargs["type"] = _optional(kind) if args else kind
                kwargs["metavar"] = f.metadata.get("metavar", _METAVARS[kind])
            arguments.add_argument(flag, **kwargs)


def _add_method_options(arguments: argparse._ArgumentGroup, dest: str, seen: set[str]) -> None:
    """One flag per option of the methods' config dataclasses (an option several methods
    share, such as ``delta_t``, is one flag); the chosen method's config checks the values."""
    from sparsetorch.algorithms.config import CONFIGS

    fields: dict[str, list[tuple[str, dataclasses.Field, Any]]] = {}
    for method in CONFIGS.names():
        cls = CONFIGS.lookup(method)
        hints = typing.get_type_hints(cls)
        for f in cls.option_fields():
            fields.setdefault(f.name, []).append((method, f, hints[f.name]))
    for name, uses in sorted(fields.items()):
        flag = "--" + name.replace("_", "-")
        if flag in seen:
            raise RuntimeError(f"a method option and an hparams field generate the flag {flag}")
        seen.add(flag)
        kinds = {_plain(hint) for _, _, hint in uses}
        if len(kinds) > 1:
            raise RuntimeError(f"method option {name!r} has types {kinds} in different methods")
        kind = kinds.pop()
        defaults: dict[Any, list[str]] = {}
        for method, f, _ in uses:
            defaults.setdefault(f.default, []).append(method)
        if len(defaults) == 1:
            (default,) = defaults
            shown = f"{'/'.join(m for m, _, _ in uses)}" + (
                "" if default is None else f"; default {default}"
            )
        else:
            shown = "; ".join(f"{'/'.join(ms)}: default {d}" for d, ms in defaults.items())
        arguments.add_argument(
            flag,
            dest=f"{dest}.{name}",
            default=argparse.SUPPRESS,
            type=_optional(kind),
            metavar=_METAVARS[kind],
            help=f"{uses[0][1].metadata['help']} ({shown})".replace("%", "%%"),
        )


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def add_config_arguments(arguments: Any, cls: type, dest: str) -> None:
    """One flag per field of the config dataclass ``cls`` (``--field-name``, or the field's
    ``flag``), with its ``help``, ``metavar`` and ``choices``; values land in
    ``args.<dest>.<field>`` only when given (:func:`given_config`)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint, meta, default = hints[f.name], f.metadata, _default(f)
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if isinstance(default, tuple):
            default = ",".join(map(str, default))
        shown = "" if default in (None, "", {}) else f" (default: {default})"
        kwargs: dict[str, Any] = {
            "dest": f"{dest}.{f.name}",
            "default": argparse.SUPPRESS,
            "help": (meta["help"] + shown).replace("%", "%%"),
        }
        if origin is dict:
            metavar = meta.get("metavar", "KEY=VALUE")
            kwargs.update(action="append", type=_pair(metavar), metavar=metavar)
        elif origin is tuple:
            kind = _int_list if args[0] is int else _names
            kwargs.update(type=kind, metavar=meta.get("metavar", "A,B,..."))
        else:
            kind = _plain(hint)
            kwargs["type"] = _optional(kind) if type(None) in args else kind
            kwargs["metavar"] = meta.get("metavar", _METAVARS[kind])
            if "choices" in meta:
                kwargs.update(choices=meta["choices"], metavar=None)
        arguments.add_argument(meta.get("flag", "--" + f.name.replace("_", "-")), **kwargs)


def given_config(args: argparse.Namespace, dest: str) -> dict[str, Any]:
    """``{field: value}`` for the flags of :func:`add_config_arguments` given on the command
    line (repeated ``KEY=VALUE`` flags merged into one dict)."""
    out = {}
    for key, value in vars(args).items():
        group, _, name = key.partition(".")
        if group == dest and name:
            out[name] = dict(value) if isinstance(value, list) else value
    return out


def _plain(hint: Any) -> type:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def given_hparams(args: argparse.Namespace) -> dict[str, Any]:
    """``{"group.field": value}`` (``"sparsity.options.NAME"`` for a method option) for the
    hparams flags present on the command line."""
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
        group, name, *option = key.split(".")
        if option:  # a method option: sparsity.options.NAME
            data[group][name] = {**data[group][name], option[0]: value}
        elif isinstance(value, list) and isinstance(data[group][name], dict):
            data[group][name] = {**data[group][name], **dict(value)}
        else:
            data[group][name] = value
    return Hparams.from_dict(data, where="command line").validate()
