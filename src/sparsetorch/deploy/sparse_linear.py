"""SparseLinear: a Linear layer whose weight lives in one or more compute paths, dispatched by
measurement per input size (see dispatch.py)."""

from __future__ import annotations

import torch
from torch import nn

from sparsetorch.deploy.dispatch import Dispatcher
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
        self.layer_key = (
            f"{self.out_features}x{self.in_features}|{weight.dtype}|{'+'.join(sorted(candidates))}"
        )
        self.chosen: dict[int, str] = {}  # M bucket -> path name, for the report

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)  # (M, in)
        if len(self.paths) == 1:
            name = next(iter(self.paths))
        else:
            name = self.dispatcher.choose(self.layer_key, self.paths, x2)
        self.chosen[x2.shape[0]] = name
        return self.paths[name](x2).reshape(*lead, self.out_features)

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
