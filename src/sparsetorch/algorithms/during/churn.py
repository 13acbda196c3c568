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


def plot_churn(
    history: Sequence[Mapping[str, Any]],
    path: str | Path,
    title: str = "",
    total_steps: int | None = None,
) -> Path:
    """PNG of each update's churn: the fraction of connections changed (left) and the overlap
    with the initial mask (right, intersection over union), one marker per update; the x axis
    spans the whole run when ``total_steps`` is given. The file gets the permissions the umask
    gives a new file."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not history:
        raise ValueError("history is empty: no mask update happened")
    steps = [h["step"] for h in history]
    fig = Figure(figsize=(10, 3.8), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    left.plot(steps, [h["changed"] for h in history], color="tab:red", marker="o", markersize=4)
    left.set(ylabel="fraction of connections changed", title="churn per update")
    right.plot(steps, [h["overlap_init"] for h in history], color="tab:blue", marker="o",
               markersize=4)  # fmt: skip
    right.set(ylabel="IoU with the initial mask", title="drift from the initial mask")
    for ax in (left, right):
        ax.set_xlabel("step")
        ax.set_ylim(0, 1.02)
        ax.set_xlim(0, total_steps if total_steps else max(steps) * 1.05)
        ax.grid(alpha=0.3)
    left.set_ylim(0, max(0.05, 1.15 * max(h["changed"] for h in history)))
    fig.suptitle(title or "topology churn")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", bbox_inches="tight"))
    return path
