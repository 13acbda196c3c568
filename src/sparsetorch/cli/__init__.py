"""The ``sparsetorch`` command line.

Each subcommand lives in its own module in this package and defines ``COMMAND``, a
:class:`Command`. Modules are discovered, so adding a subcommand is adding one file.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import pkgutil
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]
    description: str | None = None


def discover() -> dict[str, Command]:
    commands: dict[str, Command] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        command = getattr(module, "COMMAND", None)
        if isinstance(command, Command):
            commands[command.name] = command
    return dict(sorted(commands.items()))


def build_parser() -> argparse.ArgumentParser:
    from sparsetorch import __version__

    parser = argparse.ArgumentParser(
        prog="sparsetorch",
        description="Sparse neural networks for PyTorch: pruning, lottery tickets, "
        "sparse training, sparse attention, sparse formats.",
    )
    parser.add_argument("--version", action="version", version=f"sparsetorch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in discover().values():
        p = sub.add_parser(
            command.name,
            help=command.help,
            description=command.description or command.help,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
            allow_abbrev=False,  # lottery --seed is not --seeds: flags are taken as written
        )
        command.add_arguments(p)
        p.set_defaults(_run=command.run, _parser=p)
    return parser


def _unknown(args: argparse.Namespace, extra: list[str]) -> None:
    """Exit with the subcommand's usage, naming the flags it does not know and the closest of
    its own (``lottery --seed``: did you mean ``--seeds``?)."""
    sub: argparse.ArgumentParser = args._parser
    known = [s for a in sub._actions for s in a.option_strings if s.startswith("--")]
    hints = []
    for flag in (e.split("=", 1)[0] for e in extra if e.startswith("-")):
        close = difflib.get_close_matches(flag, known, n=1, cutoff=0.75)
        if close:
            hints.append(f"{flag}: did you mean {close[0]}?")
    hint = f" ({'; '.join(hints)})" if hints else ""
    sub.error(f"unrecognized arguments: {' '.join(extra)}{hint}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not getattr(args, "_parser", None):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        _unknown(args, extra)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2

    def one_line(message, category, filename, lineno, file=None, line=None) -> None:
        """A warning as the command's own line, not Python's file:line and source."""
        print(f"sparsetorch {args.command}: warning: {message}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = one_line
            code = int(args._run(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here (`sparsetorch report FILE | head`)
        return code
    except BrokenPipeError:
        # the reader went away: stop quietly, as `cat` does; stdout goes to devnull so that
        # the interpreter's own flush at exit does not fail a second time
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a command killed by the pipe
    except (
        ValueError,
        TypeError,
        FileNotFoundError,
        FileExistsError,
        NotADirectoryError,
        IsADirectoryError,
        PermissionError,
    ) as exc:  # what a user gave is wrong: one line (SPARSETORCH_DEBUG=1: the traceback)
        if os.environ.get("SPARSETORCH_DEBUG"):
            raise
        print(f"sparsetorch {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
