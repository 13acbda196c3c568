"""One-shot pruning on the four axes: ``st.prune(model, sparsity=0.9, pattern=..., criterion=...,
distribution=...)``.

How a mask is chosen (all masks are computed first; the model is touched only when every
check passed, so a bad argument leaves it unchanged):

1. the prunable weights: ``masking.prunable_parameters`` (the registry of prunable kinds:
   Linear, Conv, transformers' Conv1D, MultiheadAttention's input projection, Embedding
   weights; never biases or norms), narrowed by ``exclude`` and ``filter_fn``; each weight sees
   the pattern along its reduction axis (``pattern.along(masking.in_dim_of(...))``);
2. layers the pattern does not tile (a block size that does not divide them, N:M rows that are
   not a multiple of M) are kept dense with one warning naming them all (``indivisible=``);
3. scores: ``scores=`` if given, else ``criterion.scores(model, names, ...)``;
4. cumulative: weights already pruned get score ``-inf`` and stay pruned (IMP relies on this);
   under ``uniform``/``erk`` a layer already sparser than its new share keeps its mask and the
   other layers take up its deficit (the total stays exact); asking for more weights than
   remain in all raises ValueError;
5. the pattern reduces scores to units (weights, blocks, channels), the distribution decides how
   many units each layer keeps (per-layer counts are apportioned so that the total is exact to
   the nearest whole unit), and the one top-k selector (``sparsetorch.selection``) picks them;
   ``"global"`` ranks all layers' units together, with a floor (``min_layer_density``) that
   keeps every layer alive: a layer whose share of the global ranking falls below it keeps its
   best units up to the floor, and the others share the rest.

Memory: on a model of more than ``STREAM_ABOVE`` units, scores are computed layer by layer
and selected by ``selection.streaming_topk`` (a magnitude criterion never holds more than one
layer's scores), so the extra memory is the masks plus about one layer; smaller models take
the one-pass path. docs/benchmarks.md has the measured peaks.

FSDP2-sharded (DTensor) weights get sharded masks computed without gathering any weight: each
rank scores its rows and the counting and ranking run over all ranks
(``sparsetorch.sharding.topk``), with the same result as on the whole model, bitwise.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sparsetorch import criteria as _criteria
from sparsetorch import distributions as _distributions
from sparsetorch import patterns as _patterns
from sparsetorch._checks import check_not_meta, is_real
from sparsetorch._warnings import user_stacklevel
from sparsetorch.masking import (
    apply_masks,
    check_not_torch_pruned,
    get_mask,
    in_dim_of,
    prunable_parameters,
    take_over_torch_pruning,
    uncovered_weights,
)
from sparsetorch.masking.prunable import FilterFn
from sparsetorch.selection import (
    check_scores,
    count_finite,
    has_neginf,
    nearest_count,
    streaming_topk,
)
from sparsetorch.sharding.dtensor import is_dtensor, like, local, selector_for
from sparsetorch.sharding.topk import LOCAL

Target = tuple[str, nn.Module, str]


def _check_sparsity(sparsity: float | None) -> None:
    if sparsity is None:
        return
    if not is_real(sparsity):
        raise TypeError(f"sparsity must be a float in [0, 1), got {sparsity!r}")
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")


def _generator(generator: torch.Generator | int | None) -> torch.Generator | None:
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, int) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(generator)
    raise TypeError(f"generator must be a torch.Generator, an int seed or None, got {generator!r}")


STREAM_ABOVE = 1 << 24  # units; above this many, scores are computed and selected layer by layer
INDIVISIBLE = ("skip", "error", "partial")
_SHOWN = 8  # layer names shown in a message


def _listed(names: list[str]) -> str:
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


@dataclass
class _Target:
    full: str
    module: nn.Module
    name: str
    pattern: _patterns.Pattern  # along the weight's reduction axis

    @property
    def param(self) -> torch.Tensor:
        return self.module._parameters[self.name]


def _check_score(s: Any, target: _Target, source: str) -> None:
    where = f"{source}[{target.full!r}]"
    check_scores(s, where)
    if has_neginf(s):
        raise ValueError(f"{where} contain -inf; scores must be finite")
    shape = target.param.shape
    if s.shape != shape:
        raise ValueError(f"{where} has shape {tuple(s.shape)}, weight {tuple(shape)}")


def _check_names(
    scores: Mapping[str, torch.Tensor], targets: list[_Target], skipped: list[_Target], source: str
) -> None:
    if not isinstance(scores, Mapping):
        raise TypeError(f"{source} must be a dict {{parameter name: tensor}}")
    names = [t.full for t in targets]
    missing = [n for n in names if n not in scores]
    extra = sorted(set(scores) - set(names) - {t.full for t in skipped})
    if missing or extra:
        raise ValueError(
            f"{source} must have one entry per pruned parameter; missing {missing}, "
            f"not pruned {extra}"
        )


def _targets(found: Iterable[tuple[str, nn.Module, str]], pattern: _patterns.Pattern):
    """``prunable_parameters``' triples as targets, each with the pattern along its weight's
    reduction axis."""
    return [_Target(f, m, n, pattern.along(in_dim_of(m, n))) for f, m, n in found]


def _crosses_conv_groups(t: _Target, pattern: _patterns.Pattern) -> str | None:
    """Why N:M groups along a grouped transposed convolution's input channels (its weight is
    ``(in, out / groups, ...)``, reduced along ``in``) would cross its conv groups: each output
    channel sums over the ``in / groups`` channels of its own group only. None when they fit."""
    groups = getattr(t.module, "groups", 1)
    if not isinstance(pattern, _patterns.NM) or groups == 1 or t.pattern.in_dim != 0:
        return None
    per_group = t.param.shape[0] // groups
    if per_group % pattern.m == 0:
        return None
    return (
        f"each of its {groups} conv groups reduces over {per_group} input channels, not a "
        f"multiple of M={pattern.m}: N:M groups along the input channels would cross them"
    )


def _split_indivisible(
    targets: list[_Target], policy: str, pattern: _patterns.Pattern
) -> tuple[list[_Target], list[_Target]]:
    """(targets the pattern tiles, targets it does not); raises for ``policy="error"`` (and
    for ``"partial"`` on a pattern without partial units) naming every such layer at once."""
    if policy not in INDIVISIBLE:
        raise ValueError(f"indivisible must be one of {', '.join(INDIVISIBLE)}, got {policy!r}")
    bad, crossing = [], []
    for t in targets:
        why = t.pattern.indivisible(t.param.shape)
        if why is not None:
            bad.append((t, why))
            continue
        why = _crosses_conv_groups(t, pattern)
        if why is not None:  # not even partial groups fit: skipped or refused like the rest
            crossing.append((t, why))
            continue
        try:
            t.pattern.check(t.param.shape)
        except ValueError as exc:
            raise ValueError(f"{t.full}: {exc}") from None
    partial = policy == "partial" and isinstance(pattern, _patterns.NM)
    if partial:
        bad = crossing
    else:
        bad += crossing
    if not bad:
        return targets, []
    reasons = "; ".join(f"{t.full}: {why}" for t, why in bad[:_SHOWN])
    more = f" (and {len(bad) - _SHOWN} more)" if len(bad) > _SHOWN else ""
    if len(bad) == len(targets):
        raise ValueError(
            f"pattern {pattern.name!r} tiles none of the prunable weights: {reasons}{more}"
        )
    if policy == "error" or (policy == "partial" and not partial):  # partial N:M: skip these
        nm = (
            ", 'partial' prunes their partial N:M groups"
            if isinstance(pattern, _patterns.NM)
            else ""
        )
        raise ValueError(
            f"pattern {pattern.name!r} does not tile {len(bad)} of the prunable weights "
            f"(indivisible='skip' keeps them dense{nm}): {reasons}{more}"
        )
    names = [t.full for t, _ in bad]
    warnings.warn(
        f"pattern {pattern.name!r} does not tile {len(bad)} layer(s), kept dense (no mask: the "
        f"sparsity asked applies to the other layers; st.sparsity still counts their weights): "
        f"{_listed(names)} ({reasons}); pass "
        "indivisible='error' to refuse, or exclude/filter_fn to silence",
        UserWarning,
        stacklevel=3,
    )
    skipped = {id(t) for t, _ in bad}
    return [t for t in targets if id(t) not in skipped], [t for t, _ in bad]


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
    pats: dict[str, _patterns.Pattern],
    distribution: _distributions.Distribution,
    shapes: dict[str, torch.Size],
    density: float | None,
    available: dict[str, int],
) -> dict[str, int]:
    """Units each layer keeps under a per-layer distribution (``pats``: each layer's pattern,
    along its reduction axis). A layer is capped by its pattern and by the units it has left
    (cumulative pruning: one already sparser than its new share keeps its mask); the
    distribution spreads the excess over the other layers, so the total stays exact. A total
    above what is left by less than the rounding (the earlier round rounded down) is lowered to
    what is left."""
    upper = {n: min(pats[n].max_units(s), available[n]) for n, s in shapes.items()}
    if density is None:  # the full mask of a fixed-density pattern (N:M): N of every M
        return {n: pats[n].max_units(s) for n, s in shapes.items()}
    caps = {n: upper[n] * pats[n].unit_size(s) / math.prod(s) for n, s in shapes.items()}
    sizes = {pats[n].unit_size(s) for n, s in shapes.items()}
    # the whole number of units to keep (one unit size); lowered to what is left below
    total = nearest_count(density, sum(pats[n].num_units(s) for n, s in shapes.items()))
    weights = sum(math.prod(s) for s in shapes.values())
    room = sum(caps[n] * math.prod(s) for n, s in shapes.items())  # weights that may stay
    if density * weights > room:
        unit = next(iter(sizes)) if len(sizes) == 1 else 1
        wanted, left = nearest_count(density, weights // unit), round(room / unit)
        if wanted > left:
            raise _too_many(pats, shapes, 1 - density, wanted, left)
        density, total = room / weights, left  # the earlier rounding went down
    densities = distribution.densities(shapes, density, max_density=caps)
    if len(sizes) == 1:
        targets = {n: densities[n] * pats[n].num_units(s) for n, s in shapes.items()}
        return _apportion(targets, upper, total)
    return {
        n: min(upper[n], nearest_count(densities[n], pats[n].num_units(s)))
        for n, s in shapes.items()
    }


def _name(pats: dict[str, _patterns.Pattern]) -> str:
    return next(iter(pats.values())).name


def _too_many(
    pats: dict[str, _patterns.Pattern],
    shapes: dict[str, torch.Size],
    sparsity: float,
    k: int,
    left: int,
) -> ValueError:
    """The error for a per-layer target above what the pattern or earlier pruning leaves."""
    most = sum(pats[n].max_units(s) * pats[n].unit_size(s) for n, s in shapes.items())
    total = sum(math.prod(s) for s in shapes.values())
    if most < total and (1 - sparsity) * total > most:
        return ValueError(
            f"sparsity {sparsity:.6g} is below what pattern {_name(pats)!r} allows (at least "
            f"{1 - most / total:.4g})"
        )
    return ValueError(
        f"cannot keep {k} units: only {left} remain unpruned (pruned weights stay pruned; "
        "remove_masks first to start over)"
    )


def _global_count(
    pats: dict[str, _patterns.Pattern], shapes: dict[str, torch.Size], density: float | None
) -> int:
    sizes = {pats[n].unit_size(s) for n, s in shapes.items()}
    if len(sizes) > 1:
        raise ValueError(
            f"distribution 'global' ranks units of one size across layers, but pattern "
            f"{_name(pats)!r} has units of sizes {sorted(sizes)} here; use 'uniform' or 'erk'"
        )
    max_units = sum(pats[n].max_units(s) for n, s in shapes.items())
    if density is None:
        return max_units
    k = nearest_count(density, sum(pats[n].num_units(s) for n, s in shapes.items()))
    if k > max_units:
        total = sum(math.prod(s) for s in shapes.values())
        least = 1 - max_units * next(iter(sizes)) / total
        raise ValueError(
            f"sparsity {1 - density:.6g} is below what pattern {_name(pats)!r} allows "
            f"(at least {least:.4g})"
        )
    return k


def _floor_density(min_layer_density: float | str, density: float) -> float:
    if isinstance(min_layer_density, str):
        if min_layer_density != "auto":
            raise ValueError(
                f"min_layer_density must be 'auto' or a float in [0, 1], got {min_layer_density!r}"
            )
        return 0.1 * density
    if isinstance(min_layer_density, bool) or not isinstance(min_layer_density, int | float):
        raise TypeError(
            f"min_layer_density must be 'auto' or a float in [0, 1], got {min_layer_density!r}"
        )
    if not 0.0 <= min_layer_density <= 1.0:
        raise ValueError(f"min_layer_density must be in [0, 1], got {min_layer_density}")
    return min(float(min_layer_density), density)


def _floors(
    targets: list[_Target], fraction: float, available: dict[str, int], k: int
) -> dict[str, int]:
    """Units each layer keeps at least under the global ranking: ``ceil(fraction * units)``,
    at least one, at most what the pattern and earlier pruning leave; none (with a warning)
    when they add up to more than ``k``."""
    if fraction <= 0:
        return {}
    floors = {}
    for t in targets:
        shape = t.param.shape
        want = max(1, math.ceil(fraction * t.pattern.num_units(shape) - 1e-9))
        floors[t.full] = min(want, t.pattern.max_units(shape), available[t.full])
    if sum(floors.values()) > k:  # some layer must go empty: said by the empty-layer warning
        warnings.warn(
            f"keeping {k} units cannot meet the floor of every layer ({sum(floors.values())} "
            "units, at least one per layer): no floor applied",
            UserWarning,
            stacklevel=4,
        )
        return {}
    return floors


class _Units:
    """Each target's unit scores (``-inf`` where earlier pruning removed a weight): held when
    the model is small or sharded, computed on demand (one layer at a time) when it is large."""

    def __init__(self, targets, source, existing, params, hold):
        self.targets = {t.full: t for t in targets}
        self.source, self.existing, self.params = source, existing, params
        self.held: dict[str, torch.Tensor] = {}
        self.hold = hold
        self.finite: dict[str, int] = {}
        self.numel: dict[str, int] = {}
        self.dtype = None
        self.local_shapes: dict[str, torch.Size] = {}

    def compute(self, full: str, check: str | None = None) -> torch.Tensor:
        if full in self.held:
            return self.held[full]
        t = self.targets[full]
        s = self.source[full]
        if check is not None:
            _check_score(s, t, check)
        s = _patterns.base.float_scores(local(s, like=self.params[full]))
        self.local_shapes[full] = s.shape
        if full in self.existing:
            s = s.masked_fill(~self.existing[full].to(s.device), float("-inf"))
        return t.pattern.unit_scores(s)

    def first_pass(self, check: str) -> None:
        """Check every score tensor once and count each layer's finite units."""
        for full in self.targets:
            u = self.compute(full, check)
            self.finite[full] = count_finite(u)
            self.numel[full] = u.numel()
            self.dtype = u.dtype if self.dtype is None else torch.promote_types(self.dtype, u.dtype)
            if self.hold:
                self.held[full] = u

    def fn(self, full: str) -> Callable[[], torch.Tensor]:
        return lambda: self.compute(full)


def _global_masks(
    units: _Units, names: list[str], k: int, select: Any, stream: bool
) -> dict[str, torch.Tensor]:
    if not stream:
        return select.global_topk({n: units.compute(n) for n in names}, k)
    if k == sum(units.finite[n] for n in names):  # every unit not excluded: no ranking
        return {n: torch.isfinite(units.compute(n)) for n in names}
    sizes = [units.numel[n] for n in names]
    return dict(zip(names, streaming_topk([units.fn(n) for n in names], k, units.dtype, sizes)))


def _each_masks(
    units: _Units, counts: dict[str, int], select: Any, stream: bool
) -> dict[str, torch.Tensor]:
    if not stream:
        chosen = select.topk_each([units.compute(n) for n in counts], list(counts.values()))
        return dict(zip(counts, chosen))
    out = {}
    for n, k in counts.items():
        if k == units.finite[n]:
            out[n] = torch.isfinite(units.compute(n))
        else:
            out[n] = streaming_topk([units.fn(n)], k, units.dtype, [units.numel[n]])[0]
    return out


def _global_with_floor(
    units: _Units, k: int, floors: dict[str, int], select: Any, stream: bool
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The global top-k where every layer keeps at least its floor: layers whose share of the
    ranking falls below it keep exactly their best ``floor`` units and the other layers are
    ranked again for the rest, until none falls below (the best total score under the
    floors). Returns the unit masks and the layers held at their floor."""
    names = list(units.targets)
    at_floor: list[str] = []
    masks: dict[str, torch.Tensor] = {}
    while True:
        rest = [n for n in names if n not in at_floor]
        left = k - sum(floors[n] for n in at_floor)
        masks = {}  # the last round's masks go before this round's are built
        masks = _global_masks(units, rest, left, select, stream) if rest else {}
        below = [n for n in rest if floors and int(select.count(masks[n])) < floors[n]]
        if not below:
            break
        at_floor += below
    if at_floor:
        masks.update(_each_masks(units, {n: floors[n] for n in at_floor}, select, stream))
    return {n: masks[n] for n in names}, at_floor


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
    batch: Any = None,
    loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
    *,
    min_layer_density: float | str = "auto",
    indivisible: str = "skip",
) -> dict[str, torch.Tensor]:
    """The masks :func:`prune` would attach, ``{parameter name: bool mask}``, without touching
    the model (arguments as :func:`prune`)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_sparsity(sparsity)
    check_not_meta(model, "model")
    pattern = _patterns.get(pattern)
    crit = _criteria.get(criterion)
    dist = _distributions.get(distribution)
    generator = _generator(generator)
    check_not_torch_pruned(model)  # its weights are `<name>_orig`: st.prune takes them over
    found = prunable_parameters(model, exclude, filter_fn)
    if not found:
        raise ValueError("the model has no prunable parameters (after exclude/filter_fn)")
    targets, skipped = _split_indivisible(_targets(found, pattern), indivisible, pattern)
    params = {t.full: t.param for t in targets}
    shapes = {full: param.shape for full, param in params.items()}
    pats = {t.full: t.pattern for t in targets}
    if sparsity is None:
        if pattern.fixed_density is None:
            raise ValueError(f"sparsity is required for pattern {pattern.name!r}")
        density = None
    else:
        density = 1.0 - float(sparsity)
    floor = 0.0 if density is None else _floor_density(min_layer_density, density)

    if scores is not None:
        _check_names(scores, targets, skipped, "scores")
        source, check = scores, "scores"
    else:
        if batch is not None or getattr(crit, "runs_model", False):
            refuse_sharded(params.values(), f"criterion {crit.name!r}")
        names = [t.full for t in targets]
        source = crit.scores(model, names, batch=batch, loss_fn=loss_fn, generator=generator)
        check = f"criterion {crit.name!r} scores"
        _check_names(source, targets, [], check)

    # cumulative: already-pruned weights get -inf and are never kept again
    existing = {
        t.full: local(mask) for t in targets if (mask := get_mask(t.module, t.name)) is not None
    }
    _check_existing_follow(targets, existing)
    # sharded weights: this rank's rows only; `select` counts and ranks over all ranks
    select = selector_for(*params.values(), pattern=pattern)
    if any(is_dtensor(p) for p in params.values()) and any(
        t.pattern.in_dim != 1 and pattern.name != "unstructured" for t in targets
    ):
        raise ValueError(
            f"pattern {pattern.name!r} on an FSDP-sharded weight stored (in, out) (e.g. "
            "transformers' Conv1D) would cut its units across ranks; use 'unstructured'"
        )
    total_units = sum(t.pattern.num_units(t.param.shape) for t in targets)
    stream = select is LOCAL and total_units > STREAM_ABOVE
    units = _Units(targets, source, existing, params, hold=not stream)
    units.first_pass(check)
    finite = torch.tensor([units.finite[t.full] for t in targets], dtype=torch.int64)
    available = dict(zip(units.targets, select.sum(finite).tolist()))

    at_floor: list[str] = []
    if dist.is_global:
        k = _global_count(pats, shapes, density)
        if k > sum(available.values()):
            raise ValueError(
                f"cannot keep {k} units: only {sum(available.values())} remain unpruned "
                "(pruned weights stay pruned; remove_masks first to start over)"
            )
        floors = _floors(targets, floor, available, k)
        unit_masks, at_floor = _global_with_floor(units, k, floors, select, stream)
    else:
        counts = _unit_counts(pats, dist, shapes, density, available)
        for full, k in counts.items():
            if k > available[full]:
                raise ValueError(
                    f"{full}: cannot keep {k} units, only {available[full]} remain unpruned "
                    "(pruned weights stay pruned; remove_masks first to start over)"
                )
        unit_masks = _each_masks(units, counts, select, stream)

    masks = {}
    for t in targets:
        mask = t.pattern.expand(unit_masks.pop(t.full), units.local_shapes[t.full])
        if t.full in existing:
            mask = mask & existing[t.full].to(mask.device)
        masks[t.full] = like(mask, params[t.full])
    _tell(masks, at_floor, floor, min_layer_density, select)
    return masks


def _check_existing_follow(targets: list, existing: dict[str, torch.Tensor]) -> None:
    """Pruned weights stay pruned, so pruning again with a pattern of multi-weight units
    (block, channel) keeps whole units only where the earlier masks are made of them: over an
    unstructured mask it would keep blocks with holes, fewer weights than asked for and not
    the pattern. (N:M's units are single weights: it picks among the weights left.)"""
    for t in targets:
        mask = existing.get(t.full)
        if mask is None or t.pattern.unit_size(mask.shape) == 1:
            continue
        if not t.pattern.is_valid(mask.to(torch.bool)):
            raise ValueError(
                f"{t.full}: its mask does not follow pattern {t.pattern!r} (it was pruned "
                "with another one), and pruned weights stay pruned: pruning it again with "
                f"{t.pattern!r} would keep partial units, fewer weights than asked for; remove "
                "the masks first (st.remove_masks; CLI: --drop-masks) to start over"
            )


def _tell(
    masks: dict[str, torch.Tensor],
    at_floor: list[str],
    floor: float,
    min_layer_density: float | str,
    select: Any,
) -> None:
    """One warning for layers held at the floor; one for layers left empty (unless empty
    layers were allowed with ``min_layer_density=0``)."""
    if at_floor:
        warnings.warn(
            f"the global ranking kept fewer than min_layer_density={floor:.4g} of "
            f"{len(at_floor)} layer(s); each keeps its best weights up to that floor: "
            f"{_listed(at_floor)} (min_layer_density=0 allows empty layers)",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    if min_layer_density == 0:
        return
    empty = [n for n, m in masks.items() if select.count(local(m)) == 0]
    if empty:
        warnings.warn(
            f"{len(empty)} layer(s) keep no weight: {_listed(empty)} (too few weights kept at "
            "this sparsity; min_layer_density=0 silences this)",
            UserWarning,
            stacklevel=user_stacklevel(),
        )


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
    batch: Any = None,
    loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
    *,
    min_layer_density: float | str = "auto",
    indivisible: str = "skip",
) -> nn.Module:
    """Prune ``model`` once, in place, and return it.

    Args:
        sparsity: fraction of the prunable weights to prune, in [0, 1); ``None`` only for a
            fixed-density pattern (``"2:4"`` alone means 50%). With N:M, a sparsity above
            1 - N/M keeps the best weights among the N:M-valid ones.
        pattern: ``"unstructured"``, ``"N:M"``, ``"blockHxW"``, ``"channel"`` or a Pattern;
            applied along each weight's reduction axis (the prunable-kind registry's
            ``in_dim``: dim 0 of transformers' ``Conv1D``).
        criterion: ``"magnitude"``, ``"random"``, ``"gradient"``, ``"taylor"``, ``"snip"``,
            ``"grasp"``, ``"synflow"`` or a Criterion.
        distribution: ``"global"`` (one threshold), ``"uniform"``, ``"erk"`` or a Distribution.
        scores: ``{parameter name: tensor}`` to rank by instead of the criterion; one entry per
            pruned parameter, finite.
        generator: a torch.Generator or int seed for random criteria.
        exclude: module or parameter names kept dense (e.g. ``["fc1"]``).
        filter_fn: ``(module, fqn) -> bool`` (torchao's signature: the module and its fully
            qualified name), True = prune its weights.
        batch: data for the criteria that need it (``"gradient"``, ``"taylor"``, ``"snip"``,
            ``"grasp"``; ``"synflow"`` builds its input from it): one batch or a list of them,
            each an ``(inputs, targets)`` pair (inputs a tensor, a tuple of positional inputs or
            a dict of keyword inputs), a dict of keyword inputs (with ``labels`` for a model
            that computes its own loss, as Hugging Face models do) or a tensor.
        loss_fn: the loss of those criteria, ``loss_fn(output, targets)``
            (``loss_fn(output, batch)`` for a dict or tensor batch); default cross-entropy
            against the targets, else the output's own ``loss`` (``sparsetorch.batches``).
        min_layer_density: under ``"global"``, the floor of every layer: a layer whose share of
            the global ranking falls below this fraction of its weights keeps its best ones up
            to it (at least one unit), and the other layers share the rest, so the total stays
            exact. ``"auto"`` (default): a tenth of the target density; ``0`` allows empty
            layers. A warning names the layers held at the floor.
        indivisible: layers the pattern does not tile (a block size that does not divide them,
            N:M rows that are not a multiple of M, e.g. a stem conv of 3 input channels, a
            depthwise conv, a vocabulary of 30522 rows under ``block4x4``): ``"skip"``
            (default) keeps them dense, leaves them out of the sparsity and warns once naming
            them all; ``"error"`` refuses them all in one ValueError; ``"partial"`` (N:M only)
            prunes them too, the last partial group of L weights of a row keeping
            ``ceil(N*L/M)``.

    Weights pruned before stay pruned, also by ``torch.nn.utils.prune``: such a
    reparametrisation is taken over first (``weight = weight_orig * weight_mask``, and its
    mask becomes a sparsetorch mask; ``sparsetorch.masking.take_over_torch_pruning``). The
    total number of kept weights equals ``(1 - sparsity)`` times the prunable weights to the
    nearest whole weight (whole block/channel for those patterns); ties are broken by order (lower index, earlier layer), so a run is deterministic.
    A weight of 2+ dims that no prunable kind covers (``masking.uncovered_weights``: e.g. a
    position-embedding ``nn.Parameter``) is left dense with one warning; ``register_prunable``
    covers a custom layer type.
    """
    if isinstance(model, nn.Module):
        take_over_torch_pruning(model)
    uncovered = uncovered_weights(model)
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
        min_layer_density=min_layer_density,
        indivisible=indivisible,
    )
    warn_uncovered(uncovered, stacklevel=3)
    return apply_masks(model, masks, consume=True)


def refuse_sharded(params: Iterable[torch.Tensor], what: str) -> None:
    """One ValueError, the same on every rank, when a scoring that runs the model on data
    would see FSDP-sharded weights: scores from a sharded model are this rank's view, not the
    model's, so the masks would be wrong."""
    if any(is_dtensor(p) for p in params):
        raise ValueError(
            f"{what} runs the model on data to score its weights, which sparsetorch does not do "
            "on an FSDP-sharded model (the masks would be wrong): prune before sharding "
            "(st.prune, then fsdp), or train data-parallel with ddp"
        )


def warn_uncovered(uncovered: list[tuple[str, torch.Size]], stacklevel: int = 2) -> None:
    """One warning naming the weights of 2+ dims no prunable kind covers
    (``masking.uncovered_weights(model)``), which stay dense; none when there are none."""
    if not uncovered:
        return
    names = [f"{n} {tuple(shape)}" for n, shape in uncovered]
    warnings.warn(
        f"{len(uncovered)} weight(s) of 2+ dims belong to no prunable kind and stay dense: "
        f"{_listed(names)}; sparsetorch.register_prunable(ModuleType, ...) covers a layer "
        "type, register_prunable(ModuleType, params=()) marks it as deliberately dense",
        UserWarning,
        stacklevel=stacklevel,
    )


def warn_left_dense(
    model: nn.Module,
    found: Iterable[tuple[str, nn.Module, str]],
    pattern: Any,
    method: str,
    stacklevel: int = 2,
) -> None:
    """The two warnings of an algorithm that prunes ``found`` (``prunable_parameters``'
    triples) of ``model`` on its own: :func:`warn_uncovered` for the model's weights no
    prunable kind covers and :func:`warn_partial_groups` for the layers an N:M ``pattern``
    does not tile."""
    warn_uncovered(uncovered_weights(model), stacklevel=stacklevel + 1)
    warn_partial_groups(found, pattern, method, stacklevel=stacklevel + 1)


def warn_partial_groups(
    found: Iterable[tuple[str, nn.Module, str]], pattern: Any, method: str, stacklevel: int = 2
) -> None:
    """One warning naming the weights among ``found`` (``prunable_parameters``' triples) that
    an N:M ``pattern`` does not tile (rows along the input axis not a multiple of M: a stem
    conv, a depthwise conv), which ``method`` prunes as its paper does, every layer, with
    ``indivisible="partial"``; none when every weight is tiled or the pattern is not N:M."""
    pattern = _patterns.get(pattern)
    if not isinstance(pattern, _patterns.NM):
        return
    partial = [t.full for t in _targets(found, pattern) if t.pattern.indivisible(t.param.shape)]
    if partial:
        warnings.warn(
            f"{method} prunes every layer, as its paper does: pattern {pattern.name!r} does not "
            f"tile {len(partial)} layer(s), whose rows end in a group of L < M weights that "
            f"keeps at most ceil(N*L/M) (N:M once zero-padded to a multiple of M): "
            f"{_listed(partial)}; "
            "exclude them (exclude=, filter_fn=) to keep them dense",
            UserWarning,
            stacklevel=stacklevel,
        )


__all__ = [
    "INDIVISIBLE",
    "STREAM_ABOVE",
    "compute_masks",
    "prune",
    "refuse_sharded",
    "warn_left_dense",
    "warn_partial_groups",
    "warn_uncovered",
]
