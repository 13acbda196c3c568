"""The directory of a lottery run: IMP levels and control branches, as in OpenLTH.

Layout (``runs/lottery-<model>-<hash>/``, the hash covers the training hparams and what
defines the tickets, not rounds, seeds or controls)::

    lottery.json                 training hparams + lottery settings; written first
    seed<S>/round<RR>/           one ordinary run dir per round (sparsetorch.experiments):
                                 hparams.json, metrics.jsonl, checkpoints/, result.json, ...
    seed<S>/masks/round<RR>.pt   the masks each round trains under, saved before it trains
    seed<S>/<control>/round<RR>/ the control branches (reinit, random-prune), same layout
    seed<S>/<control>/masks/
    summary.json, lottery.md, lottery.png   per-round table and the accuracy/sparsity figure

While a process runs the lottery it holds ``.sparsetorch.lock`` (:meth:`LotteryDir.lock`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch

from sparsetorch.experiments import run_state
from sparsetorch.experiments.hparams import Hparams, identity_default, model_label, run_hash
from sparsetorch.experiments.rundir import (
    check_out_dir,
    hold_dir,
    is_unused,
    read_json,
    write_json,
)

LOTTERY_FILE = "lottery.json"
LOTTERY_VERSION = 1
TICKET = "ticket"


def lottery_name(hparams: Hparams, identity: dict[str, Any]) -> str:
    return f"lottery-{model_label(hparams.model.name)}-{run_hash(identity)}"


def is_lottery_dir(path: str | Path) -> bool:
    return (Path(path) / LOTTERY_FILE).is_file()


class LotteryDir:
    """Paths and files of one lottery run."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Hold the lottery dir for this process (creating it): a second process is refused
        with :class:`~sparsetorch._files.InUse` naming this one's pid. Temp files of killed
        writers (masks, summary) are removed; each round's run dir has its own lock."""
        busy = (
            f"lottery run {str(self.path)!r} is in use by another process (pid {{pid}}): wait "
            "for it to finish (the same command then reuses every finished round) or use "
            "another --out"
        )

        def temp_dirs() -> list[Path]:
            return [self.path, *self.path.glob("seed*/masks"), *self.path.glob("seed*/*/masks")]

        return hold_dir(self.path, busy, temp_dirs)

    @property
    def config_file(self) -> Path:
        return self.path / LOTTERY_FILE

    def branch_dir(self, seed: int, branch: str = TICKET) -> Path:
        seed_dir = self.path / f"seed{seed}"
        return seed_dir if branch == TICKET else seed_dir / branch

    def round_dir(self, seed: int, round_: int, branch: str = TICKET) -> Path:
        return self.branch_dir(seed, branch) / f"round{round_:02d}"

    def masks_file(self, seed: int, round_: int, branch: str = TICKET) -> Path:
        return self.branch_dir(seed, branch) / "masks" / f"round{round_:02d}.pt"

    # masks
    def save_masks(self, seed: int, round_: int, masks: dict[str, torch.Tensor], branch=TICKET):
        run_state.atomic_save(
            {k: v.detach().to("cpu") for k, v in masks.items()},
            self.masks_file(seed, round_, branch),
        )

    def load_masks(self, seed: int, round_: int, branch: str = TICKET) -> dict[str, torch.Tensor]:
        return run_state.safe_load(self.masks_file(seed, round_, branch))

    def has_masks(self, seed: int, round_: int, branch: str = TICKET) -> bool:
        return self.masks_file(seed, round_, branch).is_file()

    # config
    def read_config(self) -> dict[str, Any]:
        return read_json(self.config_file)

    def open(self, identity: dict[str, Any], config: dict[str, Any]) -> None:
        """Create the run, or check that an existing one holds the same tickets; then record
        ``config`` (how far the run goes may grow: more rounds, seeds or controls)."""
        check_out_dir(self.path, "lottery run dir")
        if self.config_file.is_file():
            stored = self.read_config()
            if stored.get("version") != LOTTERY_VERSION:
                raise ValueError(
                    f"lottery run {str(self.path)!r} was written by lottery version "
                    f"{stored.get('version')}; this sparsetorch writes {LOTTERY_VERSION}"
                )
            old = stored.get("identity", {})
            differ = sorted(k for k in {*old, *identity} if old.get(k) != identity.get(k))
            if differ:
                details = ", ".join(
                    f"{k}: {_shown(old, k)} -> {_shown(identity, k)}" for k in differ
                )
                raise ValueError(
                    f"lottery run {str(self.path)!r} was started with other hparams; refusing "
                    f"to resume it. Differing: {details}"
                )
        elif self.path.is_dir() and not is_unused(self.path):
            raise ValueError(
                f"{str(self.path)!r} is not empty and holds no {LOTTERY_FILE}: not a lottery run"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.config_file, {"version": LOTTERY_VERSION, "identity": identity, **config})


def _shown(identity: dict[str, Any], key: str) -> str:
    """An identity value as a difference shows it; a key left out is its default."""
    if key in identity:
        return repr(identity[key])
    try:
        return f"{identity_default(key)!r} (default)"
    except KeyError:
        return "the default"
