"""One-shot pruning on the four axes: ``st.prune(model, sparsity=0.9, pattern=..., criterion=...,
distribution=...)``.

How a mask is chosen (all masks are computed first; the model is touched only when every
check passed, so a bad argument leaves it unchanged):

1. the prunable weights: ``masks.prunable_parameters`` (Linear/Conv/Embedding weights, never
   biases or norms), narrowed by ``exclude`` and ``filter_fn``;
2. scores: ``scores=`` if given, else ``criterion.scores(model, names, ...)``;
3. cumulative: weights already pruned get score ``-inf`` and stay pruned (IMP relies on this);
   under ``uniform``/``erk`` a layer already sparser than its new share keeps its mask and the
   other layers take up its deficit (the total stays exact); asking for more weights than
   remain in all raises ValueError;
4. the pattern reduces scores to units (weights, blocks, channels), the distribution decides how
   many units each layer keeps (per-layer counts are apportioned so that the total is exact to
   the nearest whole unit), and the one top-k selector (``sparsetorch.selection``) picks them;
   ``"global"`` ranks all layers' units together.

FSDP2-sharded (DTensor) weights get sharded masks computed without gathering any weight: each
rank scores its rows and the counting and ranking run over all ranks
(``sparsetorch.sharding.topk``), with the same result as on the whole model, bitwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from sparsetorch import criteria as _criteria
from sparsetorch import distributions as _distributions
from sparsetorch import patterns as _patterns
from sparsetorch.masking import (
    apply_masks,
    check_not_torch_pruned,
    get_mask,
    prunable_parameters,
    take_over_torch_pruning,
)
from sparsetorch.masking.prunable import FilterFn
from sparsetorch.selection import check_scores, nearest_count
from sparsetorch.sharding.dtensor import like, local, selector_for

Target = tuple[str, nn.Module, str]


def _check_sparsity(sparsity: float | None) -> None:
    if sparsity is None:
        return
    if isinstance(sparsity, bool) or not isinstance(sparsity, int | float):
        raise TypeError(f"sparsity must be a float in [0, 1), got {sparsity!r}")
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")


def _generator(generator: torch.Generator | int | None) -> torch.Generator | None:
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, int) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(generator)
    raise TypeError(f"generator must be a torch.Generator, an int seed or None, got {generator!r}")


def _checked_scores(
    scores: Mapping[str, torch.Tensor], targets: list[Target], source: str
) -> dict[str, torch.Tensor]:
    if not isinstance(scores, Mapping):
        raise TypeError(f"{source} must be a dict {{parameter name: tensor}}")
    names = [full for full, _, _ in targets]
    missing = [n for n in names if n not in scores]
    extra = sorted(set(scores) - set(names))
    if missing or extra:
        raise ValueError(
            f"{source} must have one entry per pruned parameter; missing {missing}, "
            f"not pruned {extra}"
        )
    checked = {}
    for full, module, name in targets:
        s = scores[full]
        check_scores(s, f"{source}[{full!r}]")
        if s.is_floating_point() and bool(torch.isneginf(s).any()):
            raise ValueError(f"{source}[{full!r}] contain -inf; scores must be finite")
        shape = module._parameters[name].shape
        if s.shape != shape:
            raise ValueError(
                f"{source}[{full!r}] has shape {tuple(s.shape)}, weight {tuple(shape)}"
            )
        checked[full] = s
    return checked


def _apportion(targets: dict[str, float], upper: dict[str, int], total: int) -> dict[str, int]:
    """Whole counts near ``targets`` (floor or ceil each, at most ``upper``) summing to
    ``total`` (at most the uppers' sum): largest remainders first, ties in dict order. The
    total is given, not rounded from ``sum(targets)``: that float sum can fall short of a
    half (0.4666.. * 3 + 0.7 + 0.4666.. * 3 = 3.4999..) and round the wrong way."""
    total = min(total, sum(upper.values()))
    counts = {n: min(upper[n], math.floor(t)) for n, t in targets.items()}
    rest = total - sum(counts.values())
    for n in sorted(targets, key=lambda n: -(targets[n] - math.floor(targets[n]))):
        if rest <= 0:
            break
        if counts[n] < upper[n]:
            counts[n] += 1
            rest -= 1
    return counts


def _unit_counts(
    pattern: _patterns.Pattern,
    distribution: _distributions.Distribution,
    shapes: dict[str, torch.Size],
    density: float | None,
    available: dict[str, int],
) -> dict[str, int]:
    """Units each layer keeps under a per-layer distribution. A layer is capped by its pattern
    and by the units it has left (cumulative pruning: one already sparser than its new share
    keeps its mask); the distribution spreads the excess over the other layers, so the total
    stays exact. A total above what is left by less than the rounding (the earlier round
    rounded down) is lowered to what is left."""
    upper = {n: min(pattern.max_units(s), available[n]) for n, s in shapes.items()}
    if density is None:  # the full mask of a fixed-density pattern (N:M): N of every M
        return {n: pattern.max_units(s) for n, s in shapes.items()}
    caps = {n: upper[n] * pattern.unit_size(s) / math.prod(s) for n, s in shapes.items()}
    sizes = {pattern.unit_size(s) for s in shapes.values()}
    # the whole number of units to keep (one unit size); lowered to what is left below
    total = nearest_count(density, sum(pattern.num_units(s) for s in shapes.values()))
    weights = sum(math.prod(s) for s in shapes.values())
    room = sum(caps[n] * math.prod(s) for n, s in shapes.items())  # weights that may stay
    if density * weights > room:
        unit = next(iter(sizes)) if len(sizes) == 1 else 1
        wanted, left = nearest_count(density, weights // unit), round(room / unit)
        if wanted > left:
            raise _too_many(pattern, shapes, 1 - density, wanted, left)
        density, total = room / weights, left  # the earlier rounding went down
    densities = distribution.densities(shapes, density, max_density=caps)
    if len(sizes) == 1:
        targets = {n: densities[n] * pattern.num_units(s) for n, s in shapes.items()}
        return _apportion(targets, upper, total)
    return {
        n: min(upper[n], nearest_count(densities[n], pattern.num_units(s)))
        for n, s in shapes.items()
    }


def _too_many(
    pattern: _patterns.Pattern, shapes: dict[str, torch.Size], sparsity: float, k: int, left: int
) -> ValueError:
    """The error for a per-layer target above what the pattern or earlier pruning leaves."""
    most = sum(pattern.max_units(s) * pattern.unit_size(s) for s in shapes.values())
    total = sum(math.prod(s) for s in shapes.values())
    if most < total and (1 - sparsity) * total > most:
        return ValueError(
            f"sparsity {sparsity:.6g} is below what pattern {pattern.name!r} allows (at least "
            f"{1 - most / total:.4g})"
        )
    return ValueError(
        f"cannot keep {k} units: only {left} remain unpruned (pruned weights stay pruned; "
        "remove_masks first to start over)"
    )


def _global_count(
    pattern: _patterns.Pattern, shapes: dict[str, torch.Size], density: float | None
) -> int:
    sizes = {pattern.unit_size(s) for s in shapes.values()}
    if len(sizes) > 1:
        raise ValueError(
            f"distribution 'global' ranks units of one size across layers, but pattern "
            f"{pattern.name!r} has units of sizes {sorted(sizes)} here; use 'uniform' or 'erk'"
        )
    max_units = sum(pattern.max_units(s) for s in shapes.values())
    if density is None:
        return max_units
    k = nearest_count(density, sum(pattern.num_units(s) for s in shapes.values()))
    if k > max_units:
        total = sum(math.prod(s) for s in shapes.values())
        least = 1 - max_units * next(iter(sizes)) / total
        raise ValueError(
            f"sparsity {1 - density:.6g} is below what pattern {pattern.name!r} allows "
            f"(at least {least:.4g})"
        )
    return k


def compute_masks(
    model: nn.Module,
    sparsity: float | None = None,
    pattern: str | _patterns.Pattern = "unstructured",
    criterion: str | _criteria.Criterion = "magnitude",
    distribution: str | _distributions.Distribution = "global",
    scores: Mapping[str, torch.Tensor] | None = None,
    generator: torch.Generator | int | None = None,
    exclude: Iterable[str] | None = None,
    filter_fn: FilterFn | None = None,
    batch: tuple[Any, Any] | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """The masks :func:`prune` would attach, ``{parameter name: bool mask}``, without touching
    the model (arguments as :func:`prune`)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_sparsity(sparsity)
    pattern = _patterns.get(pattern)
    crit = _criteria.get(criterion)
    dist = _distributions.get(distribution)
    generator = _generator(generator)
    check_not_torch_pruned(model)  # its weights are `<name>_orig`: st.prune takes them over
    targets = prunable_parameters(model, exclude, filter_fn)
    if not targets:
        raise ValueError("the model has no prunable parameters (after exclude/filter_fn)")
    params = {full: module._parameters[name] for full, module, name in targets}
    shapes = {full: param.shape for full, param in params.items()}
    for full, shape in shapes.items():
        try:
            pattern.check(shape)
        except ValueError as exc:
            raise ValueError(f"{full}: {exc}") from None
    if sparsity is None:
        if pattern.fixed_density is None:
            raise ValueError(f"sparsity is required for pattern {pattern.name!r}")
        density = None
    else:
        density = 1.0 - float(sparsity)

    if scores is not None:
        scores = _checked_scores(scores, targets, "scores")
    else:
        names = [full for full, _, _ in targets]
        computed = crit.scores(model, names, batch=batch, loss_fn=loss_fn, generator=generator)
        scores = _checked_scores(computed, targets, f"criterion {crit.name!r} scores")

    # cumulative: already-pruned weights get -inf and are never kept again
    existing = {
        full: local(mask)
        for full, module, name in targets
        if (mask := get_mask(module, name)) is not None
    }
    # sharded weights: this rank's rows only; `select` counts and ranks over all ranks
    select = selector_for(*params.values(), pattern=pattern)
    units, local_shapes = {}, {}
    for full, s in scores.items():
        s = _patterns.base.float_scores(local(s, like=params[full]))
        local_shapes[full] = s.shape
        if full in existing:
            s = s.masked_fill(~existing[full].to(s.device), float("-inf"))
        units[full] = pattern.unit_scores(s)
    finite = [int(torch.isfinite(u).sum()) for u in units.values()]
    available = dict(zip(units, select.sum(torch.tensor(finite, dtype=torch.int64)).tolist()))

    if dist.is_global:
        k = _global_count(pattern, shapes, density)
        if k > sum(available.values()):
            raise ValueError(
                f"cannot keep {k} units: only {sum(available.values())} remain unpruned "
                "(pruned weights stay pruned; remove_masks first to start over)"
            )
        unit_masks = select.global_topk(units, k)
    else:
        counts = _unit_counts(pattern, dist, shapes, density, available)
        for full, k in counts.items():
            if k > available[full]:
                raise ValueError(
                    f"{full}: cannot keep {k} units, only {available[full]} remain unpruned "
                    "(pruned weights stay pruned; remove_masks first to start over)"
                )
        chosen = select.topk_each(list(units.values()), [counts[full] for full in units])
        unit_masks = dict(zip(units, chosen))

    masks = {}
    for full in shapes:
        mask = pattern.expand(unit_masks[full], local_shapes[full])
        if full in existing:
            mask = mask & existing[full].to(mask.device)
        masks[full] = like(mask, params[full])
    return masks


def prune(
    model: nn.Module,
    sparsity: float | None = None,
    pattern: str | _patterns.Pattern = "unstructured",
    criterion: str | _criteria.Criterion = "magnitude",
    distribution: str | _distributions.Distribution = "global",
    scores: Mapping[str, torch.Tensor] | None = None,
    generator: torch.Generator | int | None = None,
    exclude: Iterable[str] | None = None,
    filter_fn: FilterFn | None = None,
    batch: tuple[Any, Any] | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> nn.Module:
    """Prune ``model`` once, in place, and return it.

    Args:
        sparsity: fraction of the prunable weights to prune, in [0, 1); ``None`` only for a
            fixed-density pattern (``"2:4"`` alone means 50%). With N:M, a sparsity above
            1 - N/M keeps the best weights among the N:M-valid ones.
        pattern: ``"unstructured"``, ``"N:M"``, ``"blockHxW"``, ``"channel"`` or a Pattern.
        criterion: ``"magnitude"``, ``"random"``, ``"gradient"``, ``"taylor"`` or a Criterion.
        distribution: ``"global"`` (one threshold), ``"uniform"``, ``"erk"`` or a Distribution.
        scores: ``{parameter name: tensor}`` to rank by instead of the criterion; one entry per
            pruned parameter, finite.
        generator: a torch.Generator or int seed for random criteria.
        exclude: module or parameter names kept dense (e.g. ``["fc1"]``).
        filter_fn: ``(module, fqn) -> bool`` (torchao's signature: the module and its fully
            qualified name), True = prune its weight.
        batch, loss_fn: ``(inputs, targets)`` and ``loss_fn(model(inputs), targets)`` for
            criteria that need gradients (``"gradient"``, ``"taylor"``).

    Weights pruned before stay pruned, also by ``torch.nn.utils.prune``: such a
    reparametrisation is taken over first (``weight = weight_orig * weight_mask``, and its
    mask becomes a sparsetorch mask; ``sparsetorch.masking.take_over_torch_pruning``). The total number of kept weights equals ``(1 - sparsity)``
    times the prunable weights to the nearest whole weight (whole block/channel for those
    patterns); ties are broken by order (lower index, earlier layer), so a run is deterministic.
    """
    if isinstance(model, nn.Module):
        take_over_torch_pruning(model)
    masks = compute_masks(
        model,
        sparsity,
        pattern=pattern,
        criterion=criterion,
        distribution=distribution,
        scores=scores,
        generator=generator,
        exclude=exclude,
        filter_fn=filter_fn,
        batch=batch,
        loss_fn=loss_fn,
    )
    return apply_masks(model, masks)


__all__ = ["compute_masks", "prune"]
