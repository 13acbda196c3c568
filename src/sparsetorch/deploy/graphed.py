"""CUDA-graph replay of a compute path, one graph per M bucket.

An eager call of a small sparse kernel is host bound: Python, the kernel launch and (for
cuSPARSELt) torch's per-call plan set-up cost more than the GPU work at decode sizes. A CUDA
graph captured once per M bucket replays all of it as one launch: the input is copied into the
bucket's static buffer, the graph replays, and the first M rows of the static output are
returned (rows are independent, so stale rows past M in the buffer never reach a result).

Graphs do not nest: inside an outer capture (a whole-model CUDA graph) or while torch.compile
traces, a graphed path runs its plain path, whose kernels the outer graph then records.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import torch

from sparsetorch.deploy.dispatch import m_bucket


def capture(fn: Callable[[], torch.Tensor], warmup: int = 2) -> tuple[torch.cuda.CUDAGraph, object]:
    """Record ``fn()`` (reading and writing only static tensors) in a CUDA graph; returns
    ``(graph, static output)``. Warm-up calls run on a side stream first, as torch requires
    (lazy initialisation, autotuning and algorithm search must not happen during capture)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return graph, out


def graph_timer(fn: Callable[[], object], calls: int = 20, batches: int = 5) -> float:
    """Seconds per call of ``fn`` on the GPU with the host's launch cost removed: ``calls``
    back-to-back calls captured in one CUDA graph, the median over ``batches`` replays. This
    is what a path costs in a model run from a CUDA graph or ``torch.compile(mode=
    "reduce-overhead")``; pass ``Dispatcher(timer=graph_timer)`` to ``sparsify_`` for such
    serving (the default timer includes host overhead, which eager serving pays). A path that
    cannot be captured raises, and the dispatcher never chooses it. On the CPU: the default
    timer."""
    from sparsetorch.deploy.dispatch import default_timer

    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return default_timer(fn, calls, batches)
    graph, _ = capture(lambda: [fn() for _ in range(calls)], warmup=2)
    graph.replay()  # first replay uploads the graph
    samples = []
    for _ in range(batches):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / 1e3 / calls)
    return statistics.median(samples)


graph_timer.kind = "graph"  # Dispatcher keys its decisions by it


def in_outer_graph(x: torch.Tensor) -> bool:
    """True while torch.compile traces or a CUDA graph is being captured on this stream."""
    return torch.compiler.is_compiling() or (x.is_cuda and torch.cuda.is_current_stream_capturing())


class GraphedPath:
    """Mixin put before a path class: ``class G(GraphedPath, NMTritonPath)`` replays
    ``NMTritonPath.__call__`` from a graph captured on first use of each M bucket."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__(weight, bias)
        self._dtype, self._device = weight.dtype, weight.device  # what x must match
        # M bucket -> (graph, static input (bucket, in), static output (bucket, out))
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}

    def _capture(self, bucket: int, x: torch.Tensor) -> tuple:
        static_x = torch.zeros(bucket, x.shape[1], dtype=x.dtype, device=x.device)
        graph, static_y = capture(lambda: super(GraphedPath, self).__call__(static_x))
        return graph, static_x, static_y

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # x (M, in) -> (M, out)
        if in_outer_graph(x):
            return super().__call__(x)
        if x.dtype != self._dtype or x.device != self._device:  # before a graph is captured
            raise TypeError(
                f"x must be {self._dtype} on {self._device} like the weight, "
                f"got {x.dtype} on {x.device}"
            )
        m = x.shape[0]
        bucket = m_bucket(m)
        if bucket not in self._graphs:
            self._graphs[bucket] = self._capture(bucket, x)
        graph, static_x, static_y = self._graphs[bucket]
        static_x[:m].copy_(x)
        graph.replay()
        return static_y[:m].clone()  # the next replay overwrites static_y
