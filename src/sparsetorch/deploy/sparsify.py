"""``sparsify_``: after training/pruning, swap Linear weights for real sparse compute paths.

Configs name the sparse engines a layer may use; dense is always kept as a candidate and the
dispatcher picks by measurement, so a sparsified model is never slower than the dense one.

Only ``nn.Linear`` modules that are called are swapped. Every other prunable weight (the
registry of prunable kinds: convolutions, transformers' ``Conv1D`` whose weight is stored
``(in, out)``, ``nn.MultiheadAttention``'s input projection and the ``out_proj`` Linear it reads
without calling it, embeddings) stays dense and is listed in the report's ``unsupported`` with
the reason, so a pruned GPT-2 or ViT is never silently left dense.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from sparsetorch.deploy.compute_paths import PATHS
from sparsetorch.deploy.dispatch import Dispatcher
from sparsetorch.deploy.sparse_linear import SparseLinear
from sparsetorch.formats.nm import is_nm
from sparsetorch.masking import kind_of

log = logging.getLogger(__name__)

# config -> sparse engines tried (besides dense), fastest first is not assumed: all measured
CONFIGS: dict[str, tuple[str, ...]] = {
    "2:4": ("semi_structured", "cslt", "cslt_graph", "nm_triton", "nm_triton_graph"),
    "bsr": ("bsr", "bsr_triton"),
    "csr": ("csr",),
}


@dataclass
class SparsifyReport:
    swapped: dict[str, list[str]] = field(default_factory=dict)  # layer -> candidate paths
    skipped: dict[str, str] = field(default_factory=dict)  # Linear layer -> why no engine fits
    # other prunable layers (no sparse module for their kind) -> why they stay dense
    unsupported: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        dense = len(self.skipped) + len(self.unsupported)
        lines = [f"sparsified {len(self.swapped)} layer(s), kept {dense} dense"]
        lines += [f"  {name}: {', '.join(paths)}" for name, paths in self.swapped.items()]
        lines += [f"  {name}: dense ({reason})" for name, reason in self.skipped.items()]
        lines += [f"  {name}: dense ({reason})" for name, reason in self.unsupported.items()]
        return "\n".join(lines)


def _read_not_called(model: nn.Module) -> dict[int, str]:
    """Linear modules whose weights another module reads without calling them (the
    ``out_proj`` of ``nn.MultiheadAttention``): swapping them would break that module."""
    found = {}
    for mha in model.modules():
        if isinstance(mha, nn.MultiheadAttention):
            found[id(mha.out_proj)] = "read by MultiheadAttention without calling it"
    return found


def _unsupported(module: nn.Module) -> str:
    kind = kind_of(module)
    if isinstance(module, nn.MultiheadAttention):
        return "MultiheadAttention reads its input projection directly: no sparse module for it"
    if kind is not None and kind.in_dim != 1:
        return (
            f"{type(module).__name__} stores its weight (in, out) (reduction axis {kind.in_dim}); "
            "no sparse module for it keeps its state_dict"
        )
    return f"no sparse compute path for {type(module).__name__}"


def _candidates(name: str, linear: nn.Linear, engines: tuple[str, ...]) -> tuple[list, list]:
    ok, reasons = [], []
    for engine in engines:
        reason = PATHS.lookup(engine).unsupported(linear.weight)
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
) -> SparsifyReport:
    """Swap every Linear (passing ``filter_fn(module, fqn)``, torchao's signature) for a
    :class:`SparseLinear`; other prunable layers stay dense, listed in the report's
    ``unsupported`` with the reason (see the module docstring).

    ``config``: "2:4", "bsr" or "csr". ``paths`` overrides the candidate list (e.g.
    ``["nm_reference"]`` to force the reference twin). A weight that is not 2:4-valid under
    "2:4" raises ValueError naming the layer; a layer no engine can take stays dense and the
    reason is logged and reported. Returns the report; the model is changed in place.
    """
    if config not in CONFIGS:
        raise ValueError(f"unknown sparsify config {config!r}; known: {', '.join(CONFIGS)}")
    dispatcher = dispatcher or Dispatcher()
    report = SparsifyReport()
    read = _read_not_called(model)
    targets = []
    for name, module in model.named_modules():
        if kind_of(module) is None or not (filter_fn is None or filter_fn(module, name)):
            continue
        if isinstance(module, nn.Linear) and id(module) not in read:
            targets.append((name, module))
        elif any(module._parameters.get(p) is not None for p in kind_of(module).params):
            reason = read.get(id(module)) or _unsupported(module)
            report.unsupported[name] = reason
            log.info("sparsify_: %s stays dense (%s)", name, reason)
    if config == "2:4":
        bad = [n for n, m in targets if m.weight.shape[1] % 4 == 0 and not is_nm(m.weight, 2, 4)]
        if bad:
            raise ValueError(
                f"layer(s) {', '.join(bad)} are not 2:4 sparse; prune them with "
                "st.prune(model, pattern='2:4') first or exclude them with filter_fn"
            )
    for name, module in targets:
        engines = tuple(paths) if paths is not None else CONFIGS[config]
        ok, reasons = _candidates(name, module, engines)
        if not ok:
            report.skipped[name] = "; ".join(reasons)
            log.info("sparsify_: %s stays dense (%s)", name, report.skipped[name])
            continue
        candidates = ok if paths is not None else ["dense", *ok]
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, SparseLinear(module, candidates, dispatcher, name=name))
        report.swapped[name] = candidates
    return report
