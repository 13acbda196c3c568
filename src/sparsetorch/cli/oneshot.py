"""``sparsetorch oneshot``: prune a trained model after training from calibration data
(magnitude, Wanda, SparseGPT), one block at a time.

sparsetorch oneshot --model runs/transformer-dense-<hash> --method sparsegpt --pattern 2:4 --out lm-2of4.safetensors
sparsetorch oneshot --model ./my-hf-model --method wanda --sparsity 0.5 --calibration notes.txt --out ./my-hf-model-50
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from sparsetorch.cli import Command

DTYPES = ("float32", "bfloat16", "float16")


# the registered one-shot methods (sparsetorch.post_training.METHODS, a test holds them equal),
# named here so that building the command line imports no torch
METHOD_NAMES = ("magnitude", "sparsegpt", "wanda")


def _names() -> str:
    return ", ".join(METHOD_NAMES)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # "%(default).0s" prints nothing; it stops the CLI's formatter adding "(default: None)"
    parser.add_argument(
        "--model",
        metavar="PATH",
        type=Path,
        required=True,
        help="a Hugging Face model directory (with config.json; loaded offline with "
        "from_pretrained, the class named in config.architectures) or a sparsetorch run dir "
        "(sparsetorch train; its newest model)%(default).0s",
    )
    parser.add_argument("--method", default="wanda", help="one-shot method: " + _names())
    parser.add_argument(
        "--sparsity",
        type=float,
        default=None,
        help="fraction of each pruned layer's weights to prune, in [0, 1); may be left out "
        "for N:M patterns (then N of every M are kept)%(default).0s",
    )
    parser.add_argument(
        "--pattern", default="unstructured", help="unstructured, or N:M such as 2:4 or 4:8"
    )
    parser.add_argument(
        "--calibration",
        metavar="SOURCE",
        default="text",
        help="calibration text: 'text' (sparsetorch's text dataset, the Python standard "
        "library's source, or the run's own --data-dir; its training split) or a text file. "
        "A sparsetorch model gets windows of --seq-len bytes; a Hugging Face model gets "
        "lines, tokenized with --tokenizer (an encoder-decoder gets each line as its decoder's "
        "target too). A run on other data (images, your own arrays) "
        "calibrates on --samples of its own training inputs instead",
    )
    parser.add_argument(
        "--samples", type=int, default=128, help="calibration examples, drawn with --seed"
    )
    parser.add_argument(
        "--seq-len",
        type=int,
        default=None,
        help="tokens per example (default: a sparsetorch model's context; 128 for Hugging "
        "Face, whose lines are truncated to it)%(default).0s",
    )
    parser.add_argument("--batch-size", type=int, default=8, help="examples per forward pass")
    parser.add_argument("--seed", type=int, default=0, help="seed of the calibration sample")
    parser.add_argument(
        "--tokenizer",
        metavar="PATH",
        type=Path,
        default=None,
        help="Hugging Face tokenizer directory (default: --model)%(default).0s",
    )
    parser.add_argument(
        "--dtype",
        choices=DTYPES,
        default="float32",
        help="dtype a Hugging Face model is loaded in (statistics are float32 whatever it is)",
    )
    parser.add_argument(
        "--blocksize",
        type=int,
        default=argparse.SUPPRESS,
        help="SparseGPT only: columns per lazy-update block (default 128)",
    )
    parser.add_argument(
        "--dampening",
        type=float,
        default=argparse.SUPPRESS,
        help="SparseGPT only: fraction of the Hessian's mean diagonal added to its diagonal "
        "(default 0.01)",
    )
    parser.add_argument(
        "--sequential",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="feed each block the outputs of the already pruned blocks (the papers'); "
        "--no-sequential feeds the dense model's activations",
    )
    parser.add_argument(
        "--blocks",
        metavar="NAME",
        default=None,
        help="the module list to go through block by block, e.g. model.layers (default: the "
        "model's largest list of repeated modules)%(default).0s",
    )
    parser.add_argument("--device", default="cpu", help="where to compute: cpu, cuda, cuda:1")
    parser.add_argument(
        "--offload",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep the model on the CPU and move one block at a time to --device (a model "
        "larger than the GPU fits); --no-offload moves the whole model to --device",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op CPU threads (default: torch's)%(default).0s",
    )
    parser.add_argument(
        "--out",
        metavar="PATH",
        type=Path,
        default=None,
        help="where to write the pruned model: a .safetensors file -> sparsetorch.save "
        "(compressed, masks included); otherwise a Hugging Face model is written there with "
        "save_pretrained (pruning made permanent: zeros in the weights, no mask buffers; "
        "tokenizer too) and a sparsetorch model as torch.save(state_dict) with its masks"
        "%(default).0s",
    )


def _positive(name: str, value: int) -> int:
    if value < 1:
        raise ValueError(f"--{name} must be >= 1, got {value}")
    return value


def _sample(count: int, total: int, seed: int, what: str) -> list[int]:
    import torch

    if total < 1:
        raise ValueError(f"the calibration source holds no {what}")
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    return order[: min(count, total)].tolist()


def _text(source: str) -> str:
    from sparsetorch.data.text import read_corpus, stdlib_dir

    if source == "text":
        return read_corpus(stdlib_dir(), 4_000_000).decode("utf-8", errors="replace")
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"--calibration {source!r} is neither 'text' nor a file")
    return path.read_text(encoding="utf-8", errors="replace")


def _byte_batches(args: argparse.Namespace, context: int, data_dir: str | None) -> list[Any]:
    import torch

    from sparsetorch.data.text import sequences

    seq_len = args.seq_len or context
    if seq_len > context:
        raise ValueError(f"--seq-len {seq_len} exceeds the model's context {context}")
    if args.calibration == "text":
        from sparsetorch.data import load

        windows = load("text", data_dir=data_dir, context=seq_len).train.x
    else:
        windows = sequences(_text(args.calibration).encode("utf-8"), seq_len)[0]
    rows = windows[_sample(args.samples, windows.shape[0], args.seed, "window")]
    return list(torch.split(rows, args.batch_size))


def _run_batches(args: argparse.Namespace, hp: Any) -> list[Any]:
    """A run on other data than text (images, your own arrays): ``--samples`` of its own
    training inputs, drawn with ``--seed``."""
    import torch

    from sparsetorch.experiments.runner import prepare_dataset

    if args.calibration != "text" or args.seq_len is not None:
        raise ValueError(
            f"--calibration and --seq-len are for text: this run trained on {hp.dataset.name!r} "
            "and calibrates on its own training inputs"
        )
    x = prepare_dataset(hp.dataset).train.x
    rows = x[_sample(args.samples, x.shape[0], args.seed, "training input")]
    return list(torch.split(rows, args.batch_size))


def _line_batches(args: argparse.Namespace, tokenizer: Any, encoder_decoder: bool) -> list[Any]:
    """Tokenised batches of calibration lines. An encoder-decoder (T5, BART) also gets each
    line as its decoder's target (``labels``, padding as -100, which the model shifts right
    into its decoder's inputs), so that both stacks see calibration text."""
    lines = [line.strip() for line in _text(args.calibration).splitlines()]
    lines = [line for line in lines if line]
    chosen = [lines[i] for i in _sample(args.samples, len(lines), args.seed, "non-empty line")]
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    batches = []
    for i in range(0, len(chosen), args.batch_size):
        batch = dict(
            tokenizer(
                chosen[i : i + args.batch_size],
                padding=True,
                truncation=True,
                max_length=args.seq_len or 128,
                return_tensors="pt",
            )
        )
        if encoder_decoder:
            ids, mask = batch["input_ids"], batch.get("attention_mask")
            batch["labels"] = ids if mask is None else ids.masked_fill(mask == 0, -100)
            if mask is not None:
                batch["decoder_attention_mask"] = mask
        batches.append(batch)
    return batches


def _load_hf(args: argparse.Namespace) -> tuple[Any, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local directory: never the network
    try:
        import transformers
    except ImportError as exc:
        raise ValueError(
            f"{str(args.model)!r} is a Hugging Face model: install transformers "
            "(pip install sparsetorch[hf])"
        ) from exc
    import torch

    config = transformers.AutoConfig.from_pretrained(args.model)
    architecture = (getattr(config, "architectures", None) or [None])[0]
    cls = getattr(transformers, architecture, None) if architecture else None
    options = {} if args.dtype == "float32" else {"dtype": getattr(torch, args.dtype)}
    model = (cls or transformers.AutoModel).from_pretrained(args.model, **options)
    tokenizer = transformers.AutoTokenizer.from_pretrained(args.tokenizer or args.model)
    return model, tokenizer


def _save(model: Any, out: Path, tokenizer: Any | None) -> None:

    import sparsetorch as st

    if out.suffix == ".safetensors":
        out.parent.mkdir(parents=True, exist_ok=True)
        st.save(model, out)
    elif tokenizer is not None:
        st.remove_masks(model)  # the zeros stay in the weights
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    else:
        from sparsetorch.experiments.run_state import atomic_save

        atomic_save(model.state_dict(), out)  # never a half-written file
    print(f"pruned model: {out}")


def run(args: argparse.Namespace) -> int:
    import torch

    import sparsetorch as st
    from sparsetorch.experiments.runner import check_device
    from sparsetorch.post_training import METHODS, SparseGPT

    for name in ("samples", "batch_size"):
        _positive(name.replace("_", "-"), getattr(args, name))
    check_device(args.device)
    if args.seq_len is not None:
        _positive("seq-len", args.seq_len)
    if args.threads is not None:
        torch.set_num_threads(_positive("threads", args.threads))
    options = {k: v for k, v in vars(args).items() if k in ("blocksize", "dampening")}
    method = METHODS.build(args.method)
    if method.name == "sparsegpt":
        method = SparseGPT(**options)
    elif options:
        raise ValueError(f"--{' --'.join(options)} only apply to --method sparsegpt")
    tokenizer = None
    hf = (args.model / "config.json").is_file()
    if args.out is not None and args.out.is_dir() and (args.out.suffix == ".safetensors" or not hf):
        raise ValueError(f"--out {str(args.out)!r} is a directory; name the file to write")
    if not hf and (args.tokenizer is not None or args.dtype != "float32"):
        raise ValueError("--tokenizer and --dtype only apply to Hugging Face models")
    if hf:
        model, tokenizer = _load_hf(args)
        encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
        batches = _line_batches(args, tokenizer, encoder_decoder)
    elif (args.model / "hparams.json").is_file():
        from sparsetorch.experiments.reporting import model_from_run
        from sparsetorch.experiments.rundir import RunDir

        model, _ = model_from_run(args.model)
        run = RunDir(args.model)
        hp = run.hparams()
        if hp.dataset.name == "text":  # 'text' is the run's own text data when it has one
            context = run.run_info()["dataset"]["input_shape"][0]
            batches = _byte_batches(args, context, hp.dataset.data_dir)
        else:
            batches = _run_batches(args, hp)
    else:
        raise FileNotFoundError(
            f"--model {str(args.model)!r} is neither a Hugging Face model directory "
            "(config.json) nor a sparsetorch run dir (hparams.json)"
        )
    start = time.perf_counter()
    st.oneshot(
        model,
        method,
        batches,
        sparsity=args.sparsity,
        pattern=args.pattern,
        blocks=args.blocks,
        sequential=args.sequential,
        device=args.device,
        offload=args.offload,
    )
    seconds = time.perf_counter() - start
    masks = st.masks(model)
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    if method.statistics is None:  # data-free
        data = ""
    elif hf or hp.dataset.name == "text":
        tokens = sum(int(b["attention_mask"].sum()) if isinstance(b, dict) else b.numel()
                     for b in batches)  # fmt: skip
        data = f" on {tokens} calibration tokens"
    else:
        data = f" on {sum(b.shape[0] for b in batches)} calibration inputs"
    print(
        f"{method.name} pruned {len(masks)} layers to sparsity "
        f"{1 - kept / total:.4f} ({total - kept} of {total} weights){data} in {seconds:.1f} s"
    )
    if args.out is not None:
        _save(model, args.out, tokenizer)
    return 0


COMMAND = Command(
    name="oneshot",
    help="prune a trained model after training from calibration data (wanda, sparsegpt, magnitude)",
    add_arguments=add_arguments,
    run=run,
    description="Prune a trained model in one shot from calibration data, layer by layer "
    "and one block at a time (Wanda; SparseGPT with weight reconstruction; layer-wise "
    "magnitude). --model is a Hugging Face model directory or a sparsetorch run dir; the "
    "Linear layers inside its blocks are pruned, unstructured (--sparsity) or N:M "
    "(--pattern 2:4). Example: sparsetorch oneshot --model runs/RUN --method sparsegpt "
    "--pattern 2:4 --out pruned.safetensors",
)
