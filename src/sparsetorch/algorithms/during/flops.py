"""Training FLOPs as the RigL paper counts them (Evci et al. 2020, Section 4 and Appendix H).

With f_D the FLOPs of a dense forward pass and f_S those of the sparse one (every layer's dense
FLOPs times its density: what an ideal sparse kernel computes), one training iteration costs

* 3 f_S: the forward pass, and a backward pass of twice its cost (the gradients of the
  activations and of the weights); dense training 3 f_D, a smaller dense model 3 f_small;
* 2 f_S + f_D on a RigL update iteration: the gradient of every weight, pruned ones included, is
  a dense computation; over delta_T iterations that is (3 f_S delta_T + 2 f_S + f_D)/(delta_T + 1)
  per iteration, the paper's formula;
* for pruning (GMP) 3 f_S(t), with the density of iteration t (dense before pruning starts).

Mask updates themselves (top-k over the weights) are not counted, as in the paper. Dense
per-layer forward FLOPs come from ``sparsetorch.model_report.count_flops``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def forward_flops(dense: Mapping[str, float], density: Mapping[str, float]) -> float:
    """f_S: the layers' dense forward FLOPs times their densities (missing layers: dense)."""
    unknown = sorted(set(density) - set(dense))
    if unknown:
        raise ValueError(f"density names layers with no FLOPs: {unknown}")
    return float(sum(flops * density.get(name, 1.0) for name, flops in dense.items()))


def iteration_flops(
    dense: Mapping[str, float], density: Mapping[str, float], dense_gradient: bool = False
) -> float:
    """One training iteration: 3 f_S, or 2 f_S + f_D when the dense gradient is computed."""
    f_s = forward_flops(dense, density)
    return 2 * f_s + sum(dense.values()) if dense_gradient else 3 * f_s


def training_flops(
    dense: Mapping[str, float],
    total_steps: int,
    initial: Mapping[str, float],
    changes: Iterable[tuple[int, Mapping[str, float]]] = (),
    dense_gradient_steps: Iterable[int] = (),
) -> float:
    """FLOPs of ``total_steps`` iterations (per example). ``initial`` is the density of every
    layer at iteration 0; ``changes`` are ``(t, density)`` mask updates made during iteration
    t, which apply from iteration t + 1 (a GMP or RigL update follows that iteration's
    gradient); ``dense_gradient_steps`` are RigL's update iterations."""
    if total_steps < 0:
        raise ValueError(f"total_steps must be >= 0, got {total_steps}")
    special = set(dense_gradient_steps)
    bad = sorted(t for t in special if not 0 <= t < total_steps)
    if bad:
        raise ValueError(f"dense_gradient_steps must be in [0, {total_steps}), got {bad}")
    boundaries = [(0, dict(initial))]
    for t, density in sorted(changes, key=lambda c: c[0]):
        boundaries.append((t + 1, dict(density)))
    total = 0.0
    for i, (start, density) in enumerate(boundaries):
        end = boundaries[i + 1][0] if i + 1 < len(boundaries) else total_steps
        start, end = min(start, total_steps), min(end, total_steps)
        n_dense = sum(1 for t in special if start <= t < end)
        total += (end - start - n_dense) * iteration_flops(dense, density)
        total += n_dense * iteration_flops(dense, density, dense_gradient=True)
    return total
