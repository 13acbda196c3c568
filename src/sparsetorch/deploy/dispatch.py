"""Measured dispatch: per (layer key, device, M bucket) time every path that can run, once, and
use the fastest; the layer key (``SparseLinear.layer_key``) names the weight shape, dtype,
formats and sparsity (nonzeros, bytes stored per path). Dense is always a candidate, so a
sparsified layer is never slower than dense beyond measurement noise.

Decisions are cached on disk (JSON) under a key of the device name and library versions, so a
second process on the same machine does not measure again. ``timer`` is injectable (tests).

The first call stays bounded: the layer key names the weight's density *bucket* (steps of
2^(1/4), about 19%), not its exact nonzero count, so the layers of one shape, dtype and similar
density share one measurement; the default timer spends about ``TARGET_SECONDS`` per
candidate whatever a call costs; and a dispatcher stops measuring once ``time_budget``
seconds are spent, choosing dense (not cached on disk) for what is left.
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

DEFAULT_CACHE = (
    Path(os.environ.get("SPARSETORCH_CACHE", Path.home() / ".cache" / "sparsetorch"))
    / "dispatch.json"
)

log = logging.getLogger(__name__)

Timer = Callable[[Callable[[], object]], float]
GRAPH_TIMING_MAX_M = 64  # the largest M bucket a graph timer measures (Dispatcher.timer_for)
TARGET_SECONDS = 0.25  # what the default timer spends on one candidate, warm-up aside
BUCKETS_PER_OCTAVE = 4  # density buckets: 2^(1/4) apart


def density_bucket(fraction: float) -> str:
    """The density bucket of ``fraction`` (nonzeros / elements, or stored / dense bytes): the
    nearest power of 2^(1/4), as a short string for the layer key ("0" for an all-zero
    weight). Layers whose densities fall in one bucket share one measurement."""
    if fraction <= 0:
        return "0"
    step = round(BUCKETS_PER_OCTAVE * math.log2(fraction))
    return f"{2 ** (step / BUCKETS_PER_OCTAVE):.3g}"


def m_bucket(m: int) -> int:
    """Inputs are grouped by the next power of two of their row count M."""
    return 1 << max(0, m - 1).bit_length()


def default_timer(
    fn: Callable[[], object], calls: int = 20, batches: int = 5, target: float = TARGET_SECONDS
) -> float:
    """Seconds per call of ``fn``: the median over ``batches`` of ``calls`` back-to-back calls
    between two synchronisations. Host overhead counts (serving pays it), a synchronisation
    per call does not (serving does not pay that). ``calls`` shrinks so that the batches take
    about ``target`` seconds in all (at least one call each); a candidate whose single call
    already takes ``target`` is timed by that call alone."""
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    fn()  # warm-up: autotuning, algorithm search, graph capture
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    single = time.perf_counter() - t0
    if single >= target:
        return single
    calls = max(1, min(calls, int(target / batches / max(single, 1e-9))))
    fn()  # a third warm-up call, as cheap ones always had
    samples = []
    for _ in range(batches):
        sync()
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        samples.append((time.perf_counter() - t0) / calls)
    return statistics.median(samples)


def _triton_version() -> str | None:
    try:
        import triton
    except ImportError:
        return None
    return getattr(triton, "__version__", None)


def environment_key(device: torch.device) -> str:
    """What a measured decision depends on besides the layer: the device and the library
    versions whose kernels were timed (a Triton upgrade re-tunes our kernels, so it re-measures);
    on the CPU also torch's thread count (a choice timed on one thread need not hold on 16)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        cslt = getattr(torch.backends.cusparselt, "version", lambda: None)()
        return f"{name}|torch {torch.__version__}|cusparselt {cslt}|triton {_triton_version()}"
    return (
        f"cpu {os.cpu_count()} cores, {torch.get_num_threads()} threads|torch {torch.__version__}"
    )


class Dispatcher:
    """Chooses a compute path per (layer key, M bucket) by measurement."""

    def __init__(
        self,
        timer: Timer = default_timer,
        cache_file: str | os.PathLike | None = DEFAULT_CACHE,
        margin: float = 1.0,
        time_budget: float | None = 120.0,
    ) -> None:
        self.timer = timer
        self.cache_file = Path(cache_file) if cache_file else None
        self.margin = margin  # a sparse path must be at least this much faster than dense
        if time_budget is not None and time_budget < 0:
            raise ValueError(f"time_budget must be >= 0 seconds or None, got {time_budget}")
        self.time_budget = time_budget  # seconds of measuring; None: no limit
        self.spent = 0.0  # seconds measured so far
        self.decisions: dict[str, dict] = self._read()

    def _read(self) -> dict[str, dict]:
        if self.cache_file is None or not self.cache_file.exists():
            return {}
        try:
            return json.loads(self.cache_file.read_text())
        except (OSError, json.JSONDecodeError):
            return {}  # a corrupt cache is re-measured, never trusted

    def timer_for(self, m: int) -> Timer:
        """The timer for inputs of M rows: ``self.timer``, except that a graph timer measures
        only decode-sized buckets (M <= GRAPH_TIMING_MAX_M), where the host's launch cost is
        what separates the paths; above, the default timer (measured on an H200: graph-timed
        choices for M = 4096 made a CUDA-graphed prefill 0.87-0.94x of dense where the default
        timer's choices gave 1.02-1.15x; docs/benchmarks.md)."""
        if getattr(self.timer, "kind", None) == "graph" and m_bucket(m) > GRAPH_TIMING_MAX_M:
            return default_timer
        return self.timer

    def key(self, layer_key: str, device: torch.device, m: int) -> str:
        # a timer measuring something else (graph_timer: GPU time inside a CUDA graph) keeps
        # its own decisions: they differ from host-inclusive ones for small M
        kind = getattr(self.timer_for(m), "kind", None)
        return f"{environment_key(device)}|{layer_key}|M{m_bucket(m)}" + (
            f"|{kind}" if kind else ""
        )

    def choose(self, layer_key: str, paths: dict, x: torch.Tensor) -> str:
        """Name of the fastest of ``paths`` ({name: callable path}) for inputs like ``x``.

        Eager mode only: timing under torch.compile or a CUDA-graph capture would be wrong
        (and break the graph); ``SparseLinear`` reads its cached choices there instead."""
        if torch.compiler.is_compiling():
            raise RuntimeError(
                "Dispatcher.choose measures in eager mode only; run SparseLinear.tune(ms) "
                "(or the model once per batch size) before torch.compile"
            )
        key = self.key(layer_key, x.device, x.shape[0])
        decision = self.decisions.get(key)
        if decision is not None and decision["choice"] in paths:
            return decision["choice"]
        if self.time_budget is not None and self.spent >= self.time_budget:
            return self._unmeasured(key, paths)
        began = time.perf_counter()
        try:
            return self._measure(key, paths, x)
        finally:
            self.spent += time.perf_counter() - began

    def _unmeasured(self, key: str, paths: dict) -> str:
        """The budget is spent: dense (else the first path), kept in memory only, so a later
        process with time to spare measures it."""
        choice = "dense" if "dense" in paths else next(iter(paths))
        if not any(d.get("unmeasured") for d in self.decisions.values()):
            log.warning(
                "Dispatcher: the time budget (%.0f s) is spent; unmeasured layers run %s",
                self.time_budget,
                choice,
            )
        self.decisions[key] = {"choice": choice, "seconds": {}, "errors": {}, "unmeasured": True}
        return choice

    def _measure(self, key: str, paths: dict, x: torch.Tensor) -> str:
        # random data: on GPUs an all-zero probe runs dense matmuls measurably faster (power)
        g = torch.Generator(device=x.device).manual_seed(0)
        probe = torch.randn(m_bucket(x.shape[0]), x.shape[1], generator=g, device=x.device).to(
            x.dtype
        )
        times, errors = {}, {}
        timer = self.timer_for(x.shape[0])
        with torch.no_grad():
            for name, path in paths.items():
                try:
                    times[name] = timer(lambda p=path: p(probe))
                except RuntimeError as exc:  # an engine refusing this shape is not chosen
                    times[name], errors[name] = float("inf"), str(exc).splitlines()[0]
        dense = times.get("dense", float("inf"))
        fastest = min(times, key=times.get)
        choice = fastest if times[fastest] * self.margin <= dense else "dense"
        self.decisions[key] = {"choice": choice, "seconds": times, "errors": errors}
        self._write()
        return choice

    def _write(self) -> None:
        if self.cache_file is None:
            return
        measured = {k: d for k, d in self.decisions.items() if not d.get("unmeasured")}
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_file.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(measured, indent=1, sort_keys=True))
        os.replace(tmp, self.cache_file)
