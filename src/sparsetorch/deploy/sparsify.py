"""``sparsify_``: after training/pruning, swap Linear weights for real sparse compute paths.

Configs name the sparse engines a layer may use; dense is always kept as a candidate and the
dispatcher picks by measurement, so a sparsified model is never slower than the dense one.

Matrix layers are swapped: ``nn.Linear`` and transformers' ``Conv1D`` (GPT-2's layers, a
Linear whose weight is stored ``(in, out)``; the swapped layer keeps that layout in its
``weight`` and state dict). Every other layer of the registry of prunable kinds
(convolutions, ``nn.MultiheadAttention``'s input projection, embeddings) and every Linear whose
parent reads its weight itself (``nn.MultiheadAttention.out_proj``) stays dense and is listed
in the report's ``skipped`` with the reason, so a pruned GPT-2 or ViT is never silently left
dense.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from sparsetorch._checks import check_not_meta
from sparsetorch.deploy.compute_paths import PATHS
from sparsetorch.deploy.dispatch import Dispatcher
from sparsetorch.deploy.graphed import graph_timer
from sparsetorch.deploy.sparse_linear import SparseLinear, linear_rows
from sparsetorch.deploy.verify import MODES, Verification, verify_
from sparsetorch.formats.nm import is_nm
from sparsetorch.masking import kind_of
from sparsetorch.masking.kinds import is_matrix_layer

log = logging.getLogger(__name__)

# config -> sparse engines tried (besides dense), fastest first is not assumed: all measured.
# A path class registered in PATHS with ``configs = ("csr",)`` (say, a CPU kernel) joins the
# config's candidates too (``engines``).
CONFIGS: dict[str, tuple[str, ...]] = {
    "2:4": ("semi_structured", "cslt", "cslt_graph", "nm_triton", "nm_triton_graph"),
    "bsr": ("bsr", "bsr_triton"),
    "csr": ("csr", "csr_torch", "cpu_sparse"),
}

CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d)
CONV_REASON = (
    "a convolution: sparsify_ swaps Linear and transformers Conv1D layers only, it stays dense"
)


def engines(config: str) -> tuple[str, ...]:
    """The sparse engines ``config`` tries: ``CONFIGS[config]`` and every registered path
    that names the config in its ``configs``."""
    extra = tuple(
        name
        for name in PATHS.names()
        if config in getattr(PATHS.lookup(name), "configs", ()) and name not in CONFIGS[config]
    )
    return CONFIGS[config] + extra


def _read_by_parent(model: nn.Module) -> dict[str, str]:
    """Linear children whose parent reads their weight itself (so a sparse path would never
    run): {fqn: reason}. ``nn.MultiheadAttention`` passes ``out_proj.weight`` to
    ``F.multi_head_attention_forward``; ``nn.TransformerEncoderLayer``'s inference fast path
    (eval mode without gradients, while ``torch.backends.mha`` allows it) passes
    ``linear1.weight`` and ``linear2.weight`` to one fused op."""
    out = {}
    fast_path = torch.backends.mha.get_fastpath_enabled()
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, nn.MultiheadAttention):
            out[f"{prefix}out_proj"] = (
                "read by its parent nn.MultiheadAttention, which multiplies by out_proj.weight "
                "itself: no sparse path would run, it stays dense"
            )
        if isinstance(module, nn.TransformerEncoderLayer) and fast_path:
            for child in ("linear1", "linear2"):
                out[f"{prefix}{child}"] = (
                    "read by its parent nn.TransformerEncoderLayer, whose inference fast path "
                    "multiplies by the weights itself: no sparse path would run, it stays "
                    "dense (torch.backends.mha.set_fastpath_enabled(False) turns that path off)"
                )
    return out


@dataclass
class SparsifyReport:
    swapped: dict[str, list[str]] = field(default_factory=dict)  # layer -> candidate paths
    skipped: dict[str, str] = field(default_factory=dict)  # layer -> reason
    verification: Verification | None = None  # with example_inputs: the whole-model check

    def __str__(self) -> str:
        lines = [f"sparsified {len(self.swapped)} layer(s), kept {len(self.skipped)} dense"]
        lines += [f"  {name}: {', '.join(paths)}" for name, paths in self.swapped.items()]
        lines += [f"  {name}: dense ({reason})" for name, reason in self.skipped.items()]
        if self.verification is not None:
            lines.append(str(self.verification))
        return "\n".join(lines)


def _not_a_linear(module: nn.Module) -> str:
    """Why a prunable layer that is not an ``nn.Linear`` stays dense."""
    if isinstance(module, CONVOLUTIONS):
        return CONV_REASON
    if isinstance(module, nn.MultiheadAttention):
        return (
            "nn.MultiheadAttention multiplies by its input projection (in_proj_weight) itself: "
            "sparsify_ swaps Linear and transformers Conv1D layers only, it stays dense"
        )
    return (
        f"{type(module).__name__}: sparsify_ swaps Linear and transformers Conv1D layers only, "
        "it stays dense"
    )


def _is_matrix_layer(module: nn.Module) -> bool:
    """``nn.Linear`` or transformers' ``Conv1D`` with a 2-D weight: what SparseLinear takes."""
    if not is_matrix_layer(module):
        return False
    weight = getattr(module, "weight", None)  # a parametrized weight is computed here
    return isinstance(weight, torch.Tensor) and weight.dim() == 2


def _candidates(name: str, rows: torch.Tensor, tried: tuple[str, ...]) -> tuple[list, list]:
    ok, reasons = [], []
    for engine in tried:
        reason = PATHS.lookup(engine).unsupported(rows)
        if reason is None:
            ok.append(engine)
        else:
            reasons.append(f"{engine}: {reason}")
    return ok, reasons


def sparsify_(
    model: nn.Module,
    config: str = "2:4",
    filter_fn: Callable[[nn.Module, str], bool] | None = None,
    dispatcher: Dispatcher | None = None,
    paths: list[str] | None = None,
    example_inputs: tuple | dict | None = None,
    serve: str = "eager",
    workload: Callable[[nn.Module], object] | None = None,
    margin: float = 1.0,
) -> SparsifyReport:
    """Swap every Linear and transformers ``Conv1D`` (passing ``filter_fn(module, fqn)``,
    torchao's signature) for a :class:`SparseLinear`; other prunable layers stay dense, listed
    in the report's ``skipped`` with the reason (see the module docstring).

    ``config``: "2:4", "bsr" or "csr". ``paths`` overrides the candidate list (e.g.
    ``["nm_reference"]`` to force the reference twin). A weight that is not 2:4-valid under
    "2:4" raises ValueError naming the layer; a layer no engine can take stays dense and the
    reason is logged and reported, and so are convolutions (Linear and Conv1D layers only are
    swapped) and Linear layers whose parent reads their weight itself
    (``nn.MultiheadAttention.out_proj``).
    Returns the report; the model is changed in place.

    Never slower end to end: given ``example_inputs`` (the args tuple or kwargs dict of one
    real call, e.g. ``(tokens,)``) or a ``workload(module)`` callable, the choices are checked
    in the whole model as it is served (``serve``: "eager"; "graph", a whole-model CUDA graph;
    "compile", ``torch.compile(mode="reduce-overhead")``) and layers are pinned to dense where
    the sparse paths do not make the model at least ``margin`` times faster
    (:func:`~sparsetorch.deploy.verify.verify_`; ``report.verification``). Without a
    ``dispatcher``, "graph" and "compile" time layers with ``graph_timer`` (GPU time inside a
    CUDA graph, as those modes run them), "eager" with the default timer (host included).
    """
    if config not in CONFIGS:
        raise ValueError(f"unknown sparsify config {config!r}; known: {', '.join(CONFIGS)}")
    check_not_meta(model, "model")
    if serve not in MODES:
        raise ValueError(f"serve must be one of {', '.join(MODES)}, got {serve!r}")
    if example_inputs is not None and workload is not None:
        raise ValueError("give example_inputs or workload, not both")
    if dispatcher is None:
        dispatcher = Dispatcher(timer=graph_timer) if serve != "eager" else Dispatcher()
    report = SparsifyReport()

    def wanted(module: nn.Module, name: str) -> bool:
        return filter_fn is None or filter_fn(module, name)

    parent_reads = _read_by_parent(model)
    targets = []
    for name, module in model.named_modules():
        kind = kind_of(module)
        if kind is None or not wanted(module, name):
            continue
        if _is_matrix_layer(module):
            if name in parent_reads:
                report.skipped[name] = parent_reads[name]
            else:
                targets.append((name, module, linear_rows(module)))  # rows: (out, in)
        elif any(module._parameters.get(p) is not None for p in kind.params):
            report.skipped[name] = _not_a_linear(module)  # Conv, MHA, Embedding
            log.info("sparsify_: %s stays dense (%s)", name, report.skipped[name])
    if config == "2:4":
        bad = [n for n, _, rows in targets if rows.shape[1] % 4 == 0 and not is_nm(rows, 2, 4)]
        if bad:
            raise ValueError(
                f"layer(s) {', '.join(bad)} are not 2:4 sparse; prune them with "
                "st.prune(model, pattern='2:4') first or exclude them with filter_fn"
            )
    for name, module, rows in targets:
        tried = tuple(paths) if paths is not None else engines(config)
        ok, reasons = _candidates(name, rows, tried)
        if not ok:
            report.skipped[name] = "; ".join(reasons)
            log.info("sparsify_: %s stays dense (%s)", name, report.skipped[name])
            continue
        candidates = ok if paths is not None else ["dense", *ok]
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, SparseLinear(module, candidates, dispatcher, name=name))
        report.swapped[name] = candidates
    if example_inputs is not None:
        args = example_inputs if isinstance(example_inputs, tuple) else ()
        kwargs = example_inputs if isinstance(example_inputs, dict) else {}
        workload = lambda m: m(*args, **kwargs)  # noqa: E731
    if workload is not None and report.swapped:
        report.verification = verify_(model, workload, serve, margin)
    return report
