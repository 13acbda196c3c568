"""``sparsetorch bench``: time dense vs each sparse compute path for one Linear shape."""

from __future__ import annotations

import argparse
import warnings

from sparsetorch.cli import Command

DTYPES = ("fp32", "fp16", "bf16")  # torch.float32, float16, bfloat16
CONFIG_NAMES = ("2:4", "bsr", "csr")  # sparsetorch.deploy.CONFIGS (the parser imports no torch)
# torch's sparse layouts and semi-structured tensors warn on first use that they are in beta or
# a prototype: a benchmark's table is no place for that
_TORCH_STAGE_WARNINGS = r".*(is in beta|beta state|prototype stage|in prototype).*"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="csr", help=f"sparse config: {', '.join(CONFIG_NAMES)}")
    p.add_argument("--shape", default="1024x1024", help="weight shape OUTxIN")
    p.add_argument("--sparsity", type=float, default=0.9, help="for csr/bsr (2:4 is 0.5)")
    p.add_argument("--m", default="1,16,128", help="comma-separated input row counts")
    p.add_argument(
        "--dtype", choices=DTYPES, default=None, help="default: fp32 on CPU, bf16 on CUDA"
    )
    p.add_argument(
        "--device",
        default=None,
        # "%(default).0s" prints nothing; it stops the CLI's formatter adding "(default: None)"
        help="torch device (default: cuda when available, else cpu)%(default).0s",
    )
    p.add_argument("--seed", type=int, default=0)


def _weight(config: str, out: int, inp: int, sparsity: float, g):
    import torch

    w = torch.randn(out, inp, generator=g)
    if config == "2:4":
        groups = w.reshape(out, inp // 4, 4)
        keep = groups.abs().topk(2, -1).indices
        return (groups * torch.zeros_like(groups).scatter_(-1, keep, 1.0)).reshape(out, inp)
    if config == "bsr":  # whole 64x64 blocks
        blocks = torch.rand(out // 64, inp // 64, generator=g) >= sparsity
        return w * blocks.repeat_interleave(64, 0).repeat_interleave(64, 1)
    return w * (torch.rand(out, inp, generator=g) >= sparsity)


def _available_elsewhere(device, dtype) -> list[str]:
    """The configs with at least one compute path for a weight on this device."""
    import torch

    from sparsetorch.deploy import CONFIGS, PATHS

    probe = torch.zeros(128, 128, device=device, dtype=dtype)
    probe[:, ::2] = 1  # a valid 2:4 weight
    return [
        config
        for config, engines in CONFIGS.items()
        if any(not PATHS.lookup(engine).unsupported(probe) for engine in engines)
    ]


def run(args: argparse.Namespace) -> int:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_TORCH_STAGE_WARNINGS, category=UserWarning)
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    import torch

    from sparsetorch.deploy import CONFIGS, PATHS
    from sparsetorch.deploy.dispatch import default_timer
    from sparsetorch.experiments.runner import check_device

    if args.config not in CONFIGS:
        raise ValueError(f"--config must be one of {', '.join(CONFIGS)}, got {args.config!r}")
    if not 0 <= args.sparsity < 1:
        raise ValueError(f"--sparsity must be in [0, 1), got {args.sparsity}")
    try:
        out, inp = (int(v) for v in args.shape.lower().split("x"))
        ms = [int(v) for v in args.m.split(",")]
    except ValueError as exc:
        raise ValueError(f"--shape takes OUTxIN and --m a list of ints ({exc})") from exc
    if out < 1 or inp < 1 or any(m < 1 for m in ms):
        raise ValueError(f"--shape and --m take sizes >= 1, got --shape {args.shape} --m {args.m}")
    if args.config == "2:4" and inp % 4:
        raise ValueError(f"--config 2:4 needs IN a multiple of 4, got --shape {args.shape}")
    if args.config == "bsr" and (out % 64 or inp % 64):
        raise ValueError(
            f"--config bsr needs OUT and IN multiples of 64 (its 64x64 blocks), got --shape "
            f"{args.shape}"
        )
    device = check_device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    dtype = (
        dtypes[args.dtype]
        if args.dtype
        else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    )
    g = torch.Generator().manual_seed(args.seed)
    weight = _weight(args.config, out, inp, args.sparsity, g).to(device=device, dtype=dtype)
    names, skipped = ["dense"], []
    for engine in CONFIGS[args.config]:
        reason = PATHS.lookup(engine).unsupported(weight)
        if reason:
            skipped.append(f"{engine} ({reason})")
        else:
            names.append(engine)
    if len(names) == 1:  # nothing to compare dense with: say why instead of an empty table
        others = [c for c in _available_elsewhere(device, dtype) if c != args.config]
        hint = f"; on {device.type} try --config {' or '.join(others)}" if others else ""
        raise ValueError(
            f"no compute path for --config {args.config} on {device} ({dtype}): "
            f"{'; '.join(skipped)}{hint}"
        )
    for line in skipped:
        print(f"skipped: {line}")
    paths = {n: PATHS.lookup(n)(weight, None) for n in names}
    print(f"{args.config} {out}x{inp} {dtype} on {device}; speed-up = dense time / path time")
    print(f"{'M':>7}  {'dense ms':>9}  " + "  ".join(f"{n:>16}" for n in names[1:]))
    with torch.no_grad():
        for m in ms:
            x = torch.randn(m, inp, generator=g).to(device=device, dtype=dtype)
            t = {n: default_timer(lambda p=p, x=x: p(x)) for n, p in paths.items()}
            cells = "  ".join(f"{_ratio(t['dense'] / t[n]):>16}" for n in names[1:])
            print(f"{m:>7}  {t['dense'] * 1e3:>9.3f}  {cells}")
    return 0


def _ratio(r: float) -> str:
    """3 significant digits: a 500x slower path is 0.00200x, not 0.00x."""
    return f"{r:.3g}x"


COMMAND = Command(
    name="bench",
    help="time dense vs sparse compute paths for one Linear shape on this machine",
    add_arguments=add_arguments,
    run=run,
)
