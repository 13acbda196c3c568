"""Topology churn: what one mask update changed, and a plot of it over training."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from sparsetorch._files import atomic_write
from sparsetorch.sharding.dtensor import local, selector_for


def update_stats(
    before: Mapping[str, torch.Tensor],
    after: Mapping[str, torch.Tensor],
    initial: Mapping[str, torch.Tensor],
) -> dict[str, Any]:
    """Statistics of one update over all layers together (masks keyed by parameter name).

    - ``grown`` / ``dropped``: connections that became active / inactive;
    - ``changed``: (grown + dropped) / (nnz before + nnz after): for a constant nnz (SET,
      RigL) the fraction of the connections that were replaced;
    - ``overlap_prev``: intersection over union of the masks before and after this update;
    - ``overlap_init``: intersection over union of the mask after this update and the first;
    - ``density``: {layer: density after the update}.

    FSDP2-sharded (DTensor) masks are counted shard by shard, summed over the ranks at once.
    """
    select = selector_for(*after.values())
    rows = []
    for name, new in after.items():
        # shards of sharded masks (initial masks restored from a checkpoint come whole)
        old, first = local(before[name], like=new), local(initial[name], like=new)
        new = local(new)
        pairs = (new & ~old, old & ~new, old, new, new & old, new | old, new & first, new | first)
        rows.append(torch.stack([m.sum() for m in pairs]))
    counts = select.sum(torch.stack(rows).long()).tolist() if rows else []  # (layers, 8)
    grown = dropped = nnz_before = nnz_after = 0
    inter_prev = union_prev = inter_init = union_init = 0
    density = {}
    for (name, new), row in zip(after.items(), counts):
        grown += row[0]
        dropped += row[1]
        nnz_before += row[2]
        nnz_after += row[3]
        inter_prev += row[4]
        union_prev += row[5]
        inter_init += row[6]
        union_init += row[7]
        density[name] = row[3] / new.numel()
    total = nnz_before + nnz_after
    return {
        "grown": grown,
        "dropped": dropped,
        "changed": (grown + dropped) / total if total else 0.0,
        "overlap_prev": inter_prev / union_prev if union_prev else 1.0,
        "overlap_init": inter_init / union_init if union_init else 1.0,
        "density": density,
    }


def plot_churn(history: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    """PNG of the fraction changed per update and the overlap with the initial mask."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        raise ValueError("history is empty: no mask update happened")
    steps = [h["step"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, [h["changed"] for h in history], marker=".", label="fraction changed")
    ax.plot(steps, [h["overlap_init"] for h in history], label="overlap with initial mask (IoU)")
    ax.set_xlabel("step")
    ax.set_ylim(0, 1.02)
    ax.set_title(title or "topology churn")
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    finally:
        plt.close(fig)
    return path
