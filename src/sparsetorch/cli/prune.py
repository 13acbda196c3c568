"""``sparsetorch prune``: prune a saved model once and print its per-layer report.

sparsetorch prune --checkpoint model.pt --model lenet300 --sparsity 0.9
sparsetorch prune --checkpoint model.safetensors --model conv4 --pattern 2:4 --out pruned.safetensors
sparsetorch prune --checkpoint model.pt --model lenet300 --sparsity 0.8 --criterion taylor --data digits
sparsetorch prune --model lenet300 --method synflow --sparsity 0.98 --seed 0 --out masks.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sparsetorch.cli import Command

# the registries' names (criteria.CRITERIA, distributions.DISTRIBUTIONS, patterns.PATTERNS),
# spelled out so that the command line is built without importing torch (a test holds them equal)
NAMES = {
    "criterion": ("gradient", "grasp", "magnitude", "random", "snip", "synflow", "taylor"),
    "distribution": ("erk", "global", "uniform"),
    "pattern": ("channel", "unstructured", "N:M", "blockHxW"),
}


def _names(kind: str) -> str:
    return ", ".join(NAMES[kind])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        metavar="PATH",
        type=Path,
        default=None,
        help="the model's weights: a torch state_dict file (torch.save; loaded with "
        "weights_only=True) or a .safetensors file (sparsetorch.save or plain); saved masks "
        "are restored, so pruning continues from them (--drop-masks starts over). Required "
        "unless --method is given (then the model is freshly initialised from --seed)",
    )
    parser.add_argument(
        "--drop-masks",
        action="store_true",
        help="drop the masks saved in --checkpoint and prune its weights from scratch: a "
        "weight pruned before is zero, so magnitude ranks it last, but a lower --sparsity or "
        "another --pattern may keep it again (without this flag pruned weights stay pruned)",
    )
    parser.add_argument(
        "--model", metavar="NAME", required=True, help="architecture (sparsetorch.models name)"
    )
    parser.add_argument(
        "--input-shape",
        metavar="N",
        type=int,
        nargs="+",
        default=[1, 28, 28],
        help="one example's shape, without the batch dim (the model is built for it)",
    )
    parser.add_argument("--num-classes", type=int, default=10, help="the model's output classes")
    parser.add_argument(
        "--sparsity",
        type=float,
        default=None,
        help="fraction of prunable weights to prune, in [0, 1); may be left out for N:M "
        "patterns (then N of every M are kept)",
    )
    parser.add_argument(
        "--pattern", default="unstructured", help="mask shape: " + _names("pattern")
    )
    parser.add_argument(
        "--criterion", default="magnitude", help="what to keep: " + _names("criterion")
    )
    parser.add_argument(
        "--distribution", default="global", help="spread over layers: " + _names("distribution")
    )
    parser.add_argument(
        "--min-layer-density",
        metavar="D",
        default="auto",
        help="under --distribution global, the floor of every layer: a layer whose share of "
        "the ranking is below this fraction of its weights keeps its best ones up to it; "
        "'auto' (default): a tenth of the target density, 0 allows empty layers",
    )
    parser.add_argument(
        "--indivisible",
        choices=("skip", "error", "partial"),
        default="skip",
        help="layers the pattern does not tile (block size, N:M rows not a multiple of M): "
        "skip keeps them dense with one warning (default), error refuses, partial prunes N:M "
        "rows with a partial last group",
    )
    parser.add_argument(
        "--method",
        default=None,
        help="prune with a pruning-at-initialisation method instead of --criterion: snip, "
        "grasp (score the --data batch), synflow (data-free, 100 rounds), random; a mask that "
        "would empty a layer is refused",
    )
    parser.add_argument(
        "--exclude",
        metavar="NAME",
        nargs="+",
        default=[],
        help="modules or parameters kept dense, e.g. fc1 fc3.weight",
    )
    parser.add_argument(
        "--data",
        metavar="NAME",
        default="fashion-mnist",
        help="dataset whose training batch the data-driven criteria (all but magnitude and "
        "random) score on",
    )
    parser.add_argument("--batch-size", type=int, default=256, help="examples in that batch")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the random criterion and of the batch"
    )
    parser.add_argument(
        "--out",
        metavar="PATH",
        type=Path,
        default=None,
        help="save the pruned model (masks included): .safetensors -> sparsetorch.save "
        "(compressed), anything else -> torch.save(state_dict)",
    )


def _load_weights(model, path: Path) -> None:
    import torch

    from sparsetorch.masking import apply_masks, masks_from_state_dict

    if path.is_dir():
        raise ValueError(f"checkpoint {str(path)!r} is a directory; name a weights file")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from sparsetorch.checkpoint import load

        load(path, model)
        return
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(
            f"cannot read {str(path)!r} as a torch state_dict: torch.load refused it "
            f"({type(exc).__name__}: {reason}); give a file torch.save wrote or a .safetensors file"
        ) from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{str(path)!r} does not hold a state_dict (a dict of tensors)")
    apply_masks(model, masks_from_state_dict(state))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{str(path)!r} does not fit the model: {exc}") from exc


def _batch(args: argparse.Namespace):
    import torch

    from sparsetorch.data import load

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    data = load(args.data)
    g = torch.Generator().manual_seed(args.seed)
    idx = torch.randperm(len(data.train), generator=g)[: args.batch_size]
    return data.train.x[idx], data.train.y[idx]


def _floor(value: str) -> float | str:
    if value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"--min-layer-density must be 'auto' or a number, got {value!r}") from None


def _uses_data(criterion) -> bool:
    """Everything but the weight-only criteria (magnitude, random) scores on a data batch."""
    from sparsetorch.criteria import ElementwiseCriterion

    return not (isinstance(criterion, ElementwiseCriterion) and not criterion.needs_grad)


def run(args: argparse.Namespace) -> int:
    import torch

    import sparsetorch as st
    from sparsetorch.models import build

    if args.checkpoint is None and args.method is None:
        raise ValueError("--checkpoint is required (or --method, to prune at initialisation)")
    if args.method is not None and args.criterion != "magnitude":
        raise ValueError("give --method or --criterion, not both")
    if args.drop_masks and args.checkpoint is None:
        raise ValueError("--drop-masks drops the masks of --checkpoint, and none is given")
    if args.out is not None and args.out.is_dir():
        raise ValueError(f"--out {str(args.out)!r} is a directory; name the file to write")
    torch.manual_seed(args.seed)
    model = build(args.model, input_shape=tuple(args.input_shape), num_classes=args.num_classes)
    start_over = ""
    if args.checkpoint is not None:
        _load_weights(model, args.checkpoint)
        saved = st.masks(model)
        if saved and args.drop_masks:
            st.remove_masks(model)
            print(f"dropped the masks of {len(saved)} parameter(s) saved in {args.checkpoint}")
        elif saved:
            kept = sum(int(m.sum()) for m in saved.values())
            total = sum(m.numel() for m in saved.values())
            print(
                f"continuing from the masks saved in {args.checkpoint} ({len(saved)} "
                f"parameter(s), sparsity {1 - kept / total:.4f}): pruned weights stay pruned "
                "(--drop-masks starts over)"
            )
            start_over = "; --drop-masks prunes the checkpoint's weights from scratch"
    try:
        _prune(args, model)
    except ValueError as exc:
        raise ValueError(f"{exc}{start_over}") from exc
    print(st.report(model, input_shape=(1, *args.input_shape)))
    masks = st.masks(model)
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    zeros = sum(int(((model.get_parameter(n).detach() == 0) & m).sum()) for n, m in masks.items())
    if zeros:  # the table counts nonzeros; the masks (what is saved) keep these zeros too
        print(
            f"masks keep {kept} of {total} weights (density {kept / total:.4f}), {zeros} of "
            "them zeros already: the table's density counts nonzero values, the saved masks "
            "and `sparsetorch report FILE` count kept positions"
        )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.out.suffix == ".safetensors":
            st.save(model, args.out)
        else:
            from sparsetorch.experiments.run_state import atomic_save

            atomic_save(model.state_dict(), args.out)  # never a half-written file
        print(f"pruned model: {args.out}")
    return 0


def _prune(args: argparse.Namespace, model) -> None:
    import torch

    import sparsetorch as st
    from sparsetorch.criteria import get as get_criterion

    if args.method is not None:
        from sparsetorch.algorithms.at_init import prune_at_init

        prune_at_init(
            args.method,
            model,
            args.sparsity,
            batch=_batch(args) if args.method in ("snip", "grasp") else None,
            input_shape=tuple(args.input_shape),
            seed=args.seed,
            pattern=args.pattern,
            distribution=args.distribution,
            exclude=args.exclude,
        )
    else:
        criterion = get_criterion(args.criterion)
        batch = _batch(args) if _uses_data(criterion) else None
        st.prune(
            model,
            args.sparsity,
            pattern=args.pattern,
            criterion=criterion,
            distribution=args.distribution,
            generator=torch.Generator().manual_seed(args.seed),
            exclude=args.exclude,
            batch=batch,
            min_layer_density=_floor(args.min_layer_density),
            indivisible=args.indivisible,
        )


COMMAND = Command(
    name="prune",
    help="prune a saved model once (pattern, criterion, distribution) and print its report",
    add_arguments=add_arguments,
    run=run,
    description="Prune a saved model once and print its per-layer report. The checkpoint "
    "is loaded into --model (saved masks included: pruning continues from them, or starts over "
    "with --drop-masks), pruned in place by sparsetorch.pruning and saved to --out if given.",
)
