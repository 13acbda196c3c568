"""Human-readable summaries of run dirs: ``report.md`` and plots at the end of a run, the text
that ``sparsetorch report`` prints, and side-by-side comparisons."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from sparsetorch.experiments import run_state
from sparsetorch.experiments.layers import layer_densities
from sparsetorch.experiments.plots import plot_curves, plot_densities
from sparsetorch.experiments.result import TrainResult, early_stop_row
from sparsetorch.experiments.rundir import RunDir, write_text_atomic

CURVES_PNG = "curves.png"
DENSITY_PNG = "density.png"
CHURN_PNG = "topology_churn.png"  # written by the dynamic-sparsity methods (plots/)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [list(map(str, header)), *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def layer_rows(layers: dict[str, dict[str, Any]]) -> list[list[Any]]:
    rows = [
        [name, "x".join(map(str, v["shape"])), v["nnz"], v["numel"], f"{v['density']:.4f}"]
        for name, v in layers.items()
    ]
    nnz = sum(v["nnz"] for v in layers.values())
    numel = sum(v["numel"] for v in layers.values())
    rows.append(["total", "", nnz, numel, f"{nnz / max(numel, 1):.4f}"])
    return rows


LAYER_HEADER = ("parameter", "shape", "nnz", "size", "density")


def per_layer_report(model: nn.Module) -> str:
    """``sparsetorch.report(model)`` when that module exists, else a plain density table."""
    try:
        from sparsetorch.model_report import report
    except ImportError:
        return text_table(LAYER_HEADER, layer_rows(layer_densities(model)))
    return str(report(model))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


def _metric_rows(final: dict, early: dict) -> list[list[str]]:
    keys = ("step", "epoch", "val_loss", "val_acc", "test_loss", "test_acc", "sparsity")
    return [
        [label, *(_fmt(row.get(k)) for k in keys)]
        for label, row in (("final", final), ("early stop", early))
    ]


METRIC_HEADER = ("", "step", "epoch", "val loss", "val acc", "test loss", "test acc", "sparsity")


def run_title(hp: Any, sparsity: float | None = None) -> str:
    """``lenet300 on fashion-mnist, rigl at sparsity 0.900 (seed 0)``: what a figure of one
    run is of (``sparsity``: the model's measured sparsity, else the target)."""
    s = hp.sparsity
    target = s.sparsity if sparsity is None else sparsity
    method = "dense" if s.method == "dense" else f"{s.method} at sparsity {target:.3f}"
    if s.method != "dense" and s.pattern != "unstructured":
        method += f" ({s.pattern})"
    return f"{hp.model.name} on {hp.dataset.name}, {method} (seed {hp.training.seed})"


def write_run_report(run: RunDir, result: TrainResult) -> None:
    """Plots (``plots/curves.png``, ``plots/density.png``) and ``report.md``."""
    name = run.path.name
    early = early_stop_row(result.metrics)
    layers = layer_densities(result.model)
    hp = result.hparams
    title = run_title(hp, result.final.get("sparsity"))
    plot_curves(result.metrics, run.plots_dir / CURVES_PNG, title, early["step"])
    plot_densities(layers, run.plots_dir / DENSITY_PNG, f"{title}: density per layer")
    identity = run.run_info()["identity"] if run.run_file.is_file() else hp.identity()
    lines = [
        f"# Run `{name}`",
        "",
        f"{hp.model.name} on {hp.dataset.name}, method {hp.sparsity.method}: "
        f"{result.total_steps} steps ({result.steps_per_epoch} per epoch) in "
        f"{result.wall_s:.1f} s.",
        "",
        markdown_table(METRIC_HEADER, _metric_rows(result.final, early)),
        "",
        "## Non-default hyperparameters",
        "",
        markdown_table(("hparam", "value"), sorted(identity.items())) if identity else "(none)",
        "",
        "## Per-layer density",
        "",
        markdown_table(LAYER_HEADER, layer_rows(layers)),
        "",
        "## Plots",
        "",
        f"![curves]({run.plots_dir.name}/{CURVES_PNG})",
        "",
        f"![density]({run.plots_dir.name}/{DENSITY_PNG})",
        "",
        *(
            [f"![topology churn]({run.plots_dir.name}/{CHURN_PNG})", ""]
            if (run.plots_dir / CHURN_PNG).is_file()
            else []
        ),
        "Rerun (reuses this directory when the run had no given model, state, masks or hooks):",
        f"`sparsetorch train --config {run.hparams_file} --out {run.path.parent}`",
        "",
    ]
    write_text_atomic(run.report_file, "\n".join(lines))


def model_from_run(run_dir: str | Path) -> tuple[nn.Module, int]:
    """The newest model of a run dir (final, or the resume checkpoint's), and its step."""
    from sparsetorch.experiments.runner import build_model

    run = RunDir(run_dir)
    shape = run.run_info()["dataset"]
    model = build_model(run.hparams(), tuple(shape["input_shape"]), shape["num_classes"])
    step, state = run_state.latest_model_state(run.path)
    run_state.load_into(model, state)
    return model, step


def run_summary(run_dir: str | Path) -> str:
    """What ``sparsetorch report RUN_DIR`` prints: status, metrics, per-layer report."""
    run = RunDir(run_dir)
    if not run.hparams_file.is_file():
        raise FileNotFoundError(f"{str(run.path)!r} is not a run dir (no hparams.json)")
    hp = run.hparams()
    info = run.run_info()
    metrics = run.read_metrics()
    total = info["total_steps"]
    status = (
        "finished"
        if run.is_complete()
        else f"unfinished ({metrics[-1]['step'] if metrics else 0} of {total} steps)"
    )
    out = [
        f"run {run.path}  [{status}]",
        f"{hp.model.name} on {hp.dataset.name}, method {hp.sparsity.method}, {total} steps",
    ]
    identity = info["identity"]
    if identity:
        out.append("non-default: " + ", ".join(f"{k}={v}" for k, v in sorted(identity.items())))
    if metrics:
        result = run.read_result() if run.is_complete() else None
        final = result["final"] if result else metrics[-1]
        out += ["", text_table(METRIC_HEADER, _metric_rows(final, early_stop_row(metrics)))]
        # a finished run's whole time (its summary's), else the last evaluation's
        wall = result.get("wall_s", final["wall_s"]) if result else final["wall_s"]
        out.append(f"wall time: {wall:.1f} s{'' if result else ' so far'}")
    model, step = model_from_run(run.path)
    out += ["", f"per-layer sparsity (model at step {step}):", per_layer_report(model)]
    return "\n".join(out)
