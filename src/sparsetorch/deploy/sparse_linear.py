"""SparseLinear: a Linear layer whose weight lives in one or more compute paths, dispatched by
measurement per input size (see dispatch.py).

Under torch.compile or inside a CUDA-graph capture nothing is measured: the layer uses the
choice made in eager mode for the input's M bucket (``tune``), and dense (or, without a dense
candidate, the first candidate) for a bucket never measured. So ``fullgraph=True`` holds.
"""

from __future__ import annotations

import torch
from torch import nn

from sparsetorch.deploy.dispatch import Dispatcher, m_bucket
from sparsetorch.deploy.graphed import in_outer_graph
from sparsetorch.deploy.paths import PATHS


class SparseLinear(nn.Module):
    def __init__(
        self,
        linear: nn.Linear,
        candidates: list[str],
        dispatcher: Dispatcher,
        name: str = "",
    ) -> None:
        super().__init__()
        weight = linear.weight.detach()
        bias = None if linear.bias is None else linear.bias.detach()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.device, self.dtype = weight.device, weight.dtype
        self.name = name
        self.dispatcher = dispatcher
        self.paths = {c: PATHS.lookup(c)(weight, bias) for c in candidates}
        # what the timings depend on: shape, dtype, engines, and the sparsity (nonzeros, and the
        # bytes each engine stores: BSR's count of nonzero blocks) - one shape at 50% and at
        # 99% must not share a decision (the dispatcher's cache is on disk, across processes)
        stored = ",".join(f"{c}={p.nbytes()}" for c, p in sorted(self.paths.items()))
        self.layer_key = (
            f"{self.out_features}x{self.in_features}|{weight.dtype}|{'+'.join(sorted(candidates))}"
            f"|nnz {int(torch.count_nonzero(weight))}|bytes {stored}"
        )
        self.chosen: dict[int, str] = {}  # M -> path name, for the report
        self.choices: dict[int, str] = {}  # M bucket -> path name, read under compile

    def path_for(self, x2: torch.Tensor) -> str:
        """The path for a (M, in) input: measured once per M bucket in eager mode."""
        if len(self.paths) == 1:
            return next(iter(self.paths))
        m = x2.shape[0]
        if in_outer_graph(x2):  # compiling or capturing: never time, never write state
            for bucket, name in self.choices.items():
                if bucket // 2 < m <= bucket:  # comparisons, so a symbolic M also works
                    return name
            return "dense" if "dense" in self.paths else next(iter(self.paths))
        bucket = m_bucket(m)
        name = self.choices.get(bucket)
        if name is None:  # first input of this bucket: the dispatcher (measures or reads cache)
            name = self.choices[bucket] = self.dispatcher.choose(self.layer_key, self.paths, x2)
        self.chosen[m] = name
        return name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)  # (M, in)
        return self.paths[self.path_for(x2)](x2).reshape(*lead, self.out_features)

    def tune(self, ms: list[int]) -> dict[int, str]:
        """Measure ahead of time for these row counts (so no timing happens while serving)."""
        with torch.no_grad():
            for m in ms:
                self(torch.zeros(m, self.in_features, device=self.device, dtype=self.dtype))
        return dict(self.chosen)

    def compact_(self) -> None:
        """Free every path never chosen so far (keeps at least one)."""
        keep = set(self.chosen.values()) or {next(iter(self.paths))}
        self.paths = {k: v for k, v in self.paths.items() if k in keep}
        self.layer_key = f"{self.layer_key}|kept {'+'.join(sorted(self.paths))}"

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, paths={list(self.paths)}"
