"""Never slower end to end: check a sparsified model's choices in the whole model, as it runs.

Each ``SparseLinear`` chooses its path by timing the layer alone. In a model the layer's
neighbours change what a path costs: an eager, host-bound decode pays a graph-replayed
layer's copies and replay launch, which the layer's own timing hid; a whole-model CUDA graph
or ``torch.compile`` run removes the launch cost that made dense win alone. ``verify_`` runs
the model's real workload in the mode it will be served in (``"eager"``, ``"graph"``: the
workload captured in one CUDA graph and replayed, ``"compile"``: under ``torch.compile``) and
times it with the choices and with every layer on dense; where the choices do not win, it
reverts groups of layers (one group per weight shape, largest first) to dense,
keeping a reversion only if the whole model gets faster, and in the end keeps dense
everywhere if the sparse model still does not beat it. Reverting pins the layer's M buckets
that the workload used to ``"dense"``.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sparsetorch.deploy.dispatch import m_bucket
from sparsetorch.deploy.sparse_linear import SparseLinear

log = logging.getLogger(__name__)

MODES = ("eager", "graph", "compile")
Workload = Callable[[nn.Module], Any]


@dataclass
class Verification:
    """What ``verify_`` measured: seconds per workload call all-dense and as kept, the layers
    pinned to dense, and every configuration tried (description, seconds)."""

    mode: str
    dense_seconds: float
    sparse_seconds: float
    reverted: list[str] = field(default_factory=list)
    tried: list[tuple[str, float]] = field(default_factory=list)

    @property
    def speedup(self) -> float:
        return self.dense_seconds / self.sparse_seconds

    def __str__(self) -> str:
        lines = [
            f"verified in {self.mode} mode: {self.speedup:.3f}x of all-dense "
            f"({self.dense_seconds * 1e3:.3f} ms -> {self.sparse_seconds * 1e3:.3f} ms)"
        ]
        lines += [f"  tried {what}: {seconds * 1e3:.3f} ms" for what, seconds in self.tried]
        if self.reverted:
            lines.append(f"  kept dense: {', '.join(self.reverted)}")
        return "\n".join(lines)


def _sync(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def _seconds(call: Callable[[], object], device, repeats: int, target: float) -> float:
    """Median seconds per call over ``repeats`` batches (about ``target`` s in all)."""
    call()
    _sync(device)
    t0 = time.perf_counter()
    call()
    _sync(device)
    single = time.perf_counter() - t0
    calls = max(1, min(50, int(target / repeats / max(single, 1e-9))))
    samples = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(calls):
            call()
        _sync(device)
        samples.append((time.perf_counter() - t0) / calls)
    return statistics.median(samples)


def _runner(model: nn.Module, workload: Workload, mode: str, compile_kwargs: dict):
    """The workload as it is served: a callable without arguments, warmed up."""
    if mode == "eager":
        return lambda: workload(model)
    if mode == "compile":
        torch._dynamo.reset()  # choices are read while tracing: trace again
        # The workload is compiled, not the model: a workload that calls a method other than
        # forward (a decode step) or the submodules themselves would run eagerly through
        # torch.compile(model), since only the module's __call__ is compiled.
        compiled = torch.compile(workload, **compile_kwargs)
        return lambda: compiled(model)
    from sparsetorch.deploy.graphed import capture

    graph, _ = capture(lambda: workload(model), warmup=2)
    return graph.replay


class _Choices:
    """Reading and pinning the M-bucket choices of the layers a workload used."""

    def __init__(self, layers: dict[str, SparseLinear]) -> None:
        self.layers = layers
        self.saved = {name: dict(layer.choices) for name, layer in layers.items()}

    def set_dense(self, names, buckets: dict[str, set[int]]) -> None:
        for name in names:
            layer = self.layers[name]
            if "dense" in layer.paths:
                layer.set_choices({**layer.choices, **dict.fromkeys(buckets[name], "dense")})

    def restore(self, names=None) -> None:
        for name in names if names is not None else self.layers:
            self.layers[name].set_choices(self.saved[name])


def verify_(
    model: nn.Module,
    workload: Workload,
    mode: str = "eager",
    margin: float = 1.0,
    repeats: int = 5,
    target_seconds: float = 1.0,
    compile_kwargs: dict | None = None,
) -> Verification:
    """Check the sparsified ``model``'s choices on ``workload(model)`` run in ``mode`` and
    pin layers to dense where they do not win there (see the module docstring).

    ``workload(module)`` runs one step of the real work (``lambda m: m(x)``, a decode step with
    a static cache, ...); it must be capturable in a CUDA graph for ``mode="graph"`` and is
    compiled itself for ``mode="compile"`` (``torch.compile(workload, **compile_kwargs)``,
    then called with the model, so a step that calls submodules or a method other than
    ``forward`` is traced too). The sparse model is kept if it is at least ``margin`` times faster
    than all-dense. Runs under ``torch.no_grad()``. Returns the :class:`Verification`."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if margin <= 0:
        raise ValueError(f"margin must be > 0, got {margin}")
    compile_kwargs = {"mode": "reduce-overhead"} if compile_kwargs is None else compile_kwargs
    layers = {n: m for n, m in model.named_modules() if isinstance(m, SparseLinear)}
    device = next((layer.device for layer in layers.values()), None)
    with torch.no_grad():
        before = {name: dict(layer.chosen) for name, layer in layers.items()}
        for layer in layers.values():
            layer.chosen.clear()
        workload(model)  # eager: every layer chooses for the buckets the workload uses
        used = {name: {m_bucket(m) for m in layer.chosen} for name, layer in layers.items()}
        for name, layer in layers.items():  # the record keeps what other inputs chose too
            layer.chosen.update({m: c for m, c in before[name].items() if m not in layer.chosen})
        choices = _Choices(layers)
        sparse_layers = [
            name
            for name, layer in layers.items()
            if any(layer.choices.get(b, "dense") != "dense" for b in used[name])
        ]

        def measure(what: str) -> float:
            seconds = _seconds(_runner(model, workload, mode, compile_kwargs), device, repeats,
                               target_seconds)  # fmt: skip
            result.tried.append((what, seconds))
            return seconds

        result = Verification(mode, float("nan"), float("nan"))
        choices.set_dense(layers, used)
        result.dense_seconds = measure("all dense")
        choices.restore()
        if not sparse_layers:
            result.sparse_seconds = result.dense_seconds
            return result
        best = measure("as chosen")
        reverted: list[str] = []
        if best * margin > result.dense_seconds:
            for key, names in _groups(layers, sparse_layers).items():
                choices.set_dense(names, used)
                seconds = measure(f"dense for {key} ({len(names)} layers)")
                if seconds < best:
                    best, reverted = seconds, reverted + names
                else:
                    choices.restore(names)
            if best * margin > result.dense_seconds:
                choices.set_dense(layers, used)
                best, reverted = result.dense_seconds, sparse_layers
        result.sparse_seconds, result.reverted = best, reverted
        log.info("%s", result)
        if mode == "compile":
            torch._dynamo.reset()  # the caller compiles the model with the kept choices
    return result


def _groups(layers: dict[str, SparseLinear], names: list[str]) -> dict[str, list[str]]:
    """Layers by weight shape, largest groups first."""
    groups: dict[str, list[str]] = {}
    for name in names:
        layer = layers[name]
        groups.setdefault(f"{layer.out_features}x{layer.in_features}", []).append(name)
    return dict(sorted(groups.items(), key=lambda item: -len(item[1])))


__all__ = ["MODES", "Verification", "verify_"]
