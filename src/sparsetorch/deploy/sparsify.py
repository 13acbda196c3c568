"""``sparsify_``: after training/pruning, swap Linear weights for real sparse compute paths.

Configs name the sparse engines a layer may use; dense is always kept as a candidate and the
dispatcher picks by measurement, so a sparsified model is never slower than the dense one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from sparsetorch.deploy.dispatch import Dispatcher
from sparsetorch.deploy.paths import PATHS
from sparsetorch.deploy.sparse_linear import SparseLinear
from sparsetorch.kernels.nm_reference import is_2to4

log = logging.getLogger(__name__)

# config -> sparse engines tried (besides dense), fastest first is not assumed: all measured
CONFIGS: dict[str, tuple[str, ...]] = {
    "2:4": ("semi_structured", "cslt", "cslt_graph", "nm_triton", "nm_triton_graph"),
    "bsr": ("bsr", "bsr_triton"),
    "csr": ("csr", "cpu_sparse"),
}


@dataclass
class SparsifyReport:
    swapped: dict[str, list[str]] = field(default_factory=dict)  # layer -> candidate paths
    skipped: dict[str, str] = field(default_factory=dict)  # layer -> reason

    def __str__(self) -> str:
        lines = [f"sparsified {len(self.swapped)} layer(s), kept {len(self.skipped)} dense"]
        lines += [f"  {name}: {', '.join(paths)}" for name, paths in self.swapped.items()]
        lines += [f"  {name}: dense ({reason})" for name, reason in self.skipped.items()]
        return "\n".join(lines)


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
    filter_fn: Callable[[str, nn.Module], bool] | None = None,
    dispatcher: Dispatcher | None = None,
    paths: list[str] | None = None,
) -> SparsifyReport:
    """Swap every Linear (passing ``filter_fn(name, module)``) for a :class:`SparseLinear`.

    ``config``: "2:4", "bsr" or "csr". ``paths`` overrides the candidate list (e.g.
    ``["nm_reference"]`` to force the reference twin). A weight that is not 2:4-valid under
    "2:4" raises ValueError naming the layer; a layer no engine can take stays dense and the
    reason is logged and reported. Returns the report; the model is changed in place.
    """
    if config not in CONFIGS:
        raise ValueError(f"unknown sparsify config {config!r}; known: {', '.join(CONFIGS)}")
    dispatcher = dispatcher or Dispatcher()
    report = SparsifyReport()
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and (filter_fn is None or filter_fn(name, module))
    ]
    if config == "2:4":
        bad = [n for n, m in targets if m.weight.shape[1] % 4 == 0 and not is_2to4(m.weight)]
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
