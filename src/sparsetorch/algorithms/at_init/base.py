"""What the at-initialisation methods share: scores -> masks on the four axes (with the layer
collapse check), and the training hook that prunes once before the first step."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from sparsetorch._checks import is_int
from sparsetorch.experiments.hooks import TrainContext, TrainHook
from sparsetorch.masks import apply_masks
from sparsetorch.prune import compute_masks

FilterFn = Callable[[str, nn.Module, str], bool]


def empty_layers(masks: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the layers whose mask keeps no weight (layer collapse)."""
    return [name for name, mask in masks.items() if not bool(mask.any())]


def check_no_collapse(
    masks: Mapping[str, torch.Tensor], method: str, sparsity: Any, distribution: Any
) -> None:
    empty = empty_layers(masks)
    if empty:
        other = "" if method == "synflow" else ", or method 'synflow'"
        raise ValueError(
            f"{method}: sparsity {sparsity} with distribution {distribution!r} would empty "
            f"layer(s) {empty} (layer collapse: no weight kept, nothing flows through); use a "
            f"lower sparsity, distribution 'erk'{other}"
        )


def prune_with_scores(
    model: nn.Module,
    scores: Mapping[str, torch.Tensor],
    sparsity: float | None,
    *,
    method: str,
    pattern: Any = "unstructured",
    distribution: Any = "global",
    exclude: Iterable[str] | None = None,
    filter_fn: FilterFn | None = None,
) -> nn.Module:
    """Masks from ``scores`` on the pattern and distribution, checked for layer collapse, then
    attached (the model is untouched when any check fails)."""
    masks = compute_masks(
        model,
        sparsity,
        pattern=pattern,
        distribution=distribution,
        scores=scores,
        exclude=exclude,
        filter_fn=filter_fn,
    )
    check_no_collapse(masks, method, sparsity, distribution)
    return apply_masks(model, masks)


def mask_seed(seed: int) -> int:
    """The seed of a run's random mask, derived from (never equal to) the run's seed: the
    initial weights come from ``torch.manual_seed(seed)``, and random scores drawn from the
    same stream would be a function of those weights."""
    digest = hashlib.sha256(f"sparsetorch.at_init.mask:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def take_options(method: str, options: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict:
    """``defaults`` updated by ``options``; unknown keys raise one ValueError listing the known."""
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        known = ", ".join(sorted(defaults)) or "none"
        raise ValueError(f"method {method!r} has no option(s) {unknown}; known: {known}")
    return {**defaults, **options}


def check_positive_int(name: str, value: Any) -> int:
    if not is_int(value):
        raise TypeError(f"{name} must be an int >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value}")
    return int(value)


def scoring_batches(ctx: TrainContext, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``ctx.sample_batch`` for one batch; for ``n`` > 1, ``n`` batches of its size drawn
    without replacement from the training split (seeded by the run's seed)."""
    if ctx.sample_batch is None:
        raise ValueError("this method scores on data, but the training context has no sample_batch")
    if n == 1:
        return [ctx.sample_batch]
    size = len(ctx.sample_batch[0])
    train = ctx.data.train
    if n * size > len(train):
        raise ValueError(
            f"batches={n} of {size} examples need {n * size} training examples, the split has "
            f"{len(train)}"
        )
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(mask_seed(ctx.seed)))
    return [
        (train.x[idx].to(ctx.device), train.y[idx].to(ctx.device))
        for idx in order[: n * size].view(n, size)
    ]


class AtInitHook(TrainHook):
    """Prune once in ``on_train_start`` (static sparse training: the mask never changes after).

    Subclasses implement :meth:`prune`. After a resume the masks come back with the checkpoint
    and nothing is recomputed.
    """

    method = "at_init"
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, hparams: Any) -> None:
        sp = hparams.sparsity
        self.sparsity = sp.sparsity
        self.pattern = sp.pattern
        self.distribution = sp.distribution
        self.options = take_options(self.method, sp.options, self.defaults)
        self.done = False

    def prune(self, ctx: TrainContext) -> None:
        raise NotImplementedError

    def on_train_start(self, ctx: TrainContext) -> None:
        if not self.done:
            self.prune(ctx)
            self.done = True

    def state_dict(self) -> dict[str, Any]:
        return {"done": self.done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state) != {"done"}:
            raise ValueError(f"{type(self).__name__} state must be {{'done': bool}}, got {state}")
        self.done = bool(state["done"])
