"""Write a run's newest model as a compressed sparse checkpoint: masked and pruned weights are
stored as their kept values plus small indices (docs/checkpoints.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sparsetorch.cli import Command

DEFAULT_NAME = "model.safetensors"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a run directory")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        # "%(default).0s" prints nothing but stops argparse from appending "(default: None)"
        help=f"file to write, replaced atomically (default: RUN_DIR/{DEFAULT_NAME})%(default).0s",
    )
    parser.add_argument(
        "--report", action="store_true", help="also print the per-tensor table of the file"
    )


def plain_model_bytes(state) -> int:
    """Bytes of a state_dict's tensors as a plain (unmasked) model holds them: every entry
    but the masks (``sparsetorch.masking.mask_owner``)."""
    from sparsetorch.masking import mask_owner

    return sum(
        t.numel() * t.element_size() for k, t in state.items() if mask_owner(k, state) is None
    )


def run(args: argparse.Namespace) -> int:
    from sparsetorch.checkpoint import report_file, save
    from sparsetorch.experiments.run_state import latest_model_state

    if not args.run_dir.is_dir():
        raise FileNotFoundError(f"run dir {str(args.run_dir)!r} does not exist")
    step, state = latest_model_state(args.run_dir)
    if args.out is not None:  # as prune --out and oneshot --out: its directory is made
        args.out.parent.mkdir(parents=True, exist_ok=True)
    out = save(state, args.out or args.run_dir / DEFAULT_NAME)
    dense = plain_model_bytes(state)
    size = out.stat().st_size
    print(
        f"exported step {step} of {args.run_dir} to {out}: {size:,} bytes, "
        f"{size / max(dense, 1):.3f}x the {dense:,} bytes of the plain model's dense "
        "state_dict (masks are not counted there: a plain model has none)"
    )
    if args.report:
        print(report_file(out))
    return 0


COMMAND = Command(
    name="export",
    help="write a run's newest model as a compressed sparse safetensors checkpoint",
    add_arguments=add_arguments,
    run=run,
    description=__doc__,
)
