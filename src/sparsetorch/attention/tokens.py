"""Global tokens (Longformer, Beltagy et al. 2020): chosen tokens attend to every key and every
query attends to them. With g tokens: 2gn - g² pairs, O(ng); ``local(w) | global_tokens(...)``
is Longformer's O(n(w + g)).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from sparsetorch.attention.pattern import AttentionPattern, Bounds, Grid, MaskFn


def lookup(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``table[idx]``, False past the end: safe for the padded indices FlexAttention passes."""
    return table[idx.clamp(0, table.numel() - 1)] & (idx < table.numel())


class GlobalTokens(AttentionPattern):
    def __init__(self, indices: Iterable[int]) -> None:
        values = sorted(set(_ints(indices)))
        if not values:
            raise ValueError("global_tokens: indices must name at least one token")
        if values[0] < 0:
            raise ValueError(f"global_tokens: indices must be >= 0, got {values[0]}")
        self.indices = tuple(values)
        self._tables: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def check(self, n: int) -> None:
        if self.indices[-1] >= n:
            raise ValueError(
                f"global_tokens: index {self.indices[-1]} is out of range for a sequence of "
                f"length n={n} (allowed 0..{n - 1})"
            )

    def _tensors(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(sorted indices, is-global flag per position up to the last index) on ``device``."""
        device = torch.device(device or "cpu")
        found = self._tables.get(device)
        if found is not None:
            return found
        idx = torch.tensor(self.indices, dtype=torch.int64, device=device)
        flag = torch.zeros(self.indices[-1] + 1, dtype=torch.bool, device=device)
        flag[idx] = True
        if not torch.compiler.is_compiling():  # a traced (fake) table must not be kept
            self._tables[device] = (idx, flag)
        return idx, flag

    def fn(self, n: int, device=None) -> MaskFn:
        _, flag = self._tensors(device)
        return lambda q, kv: lookup(flag, q) | lookup(flag, kv)

    def bounds(self, grid: Grid) -> Bounds:
        idx, _ = self._tensors(grid.device)
        # global rows in each query block, global columns in each key block
        gq = torch.searchsorted(idx, grid.qe) - torch.searchsorted(idx, grid.qs)  # (nqb, 1)
        gk = torch.searchsorted(idx, grid.ke) - torch.searchsorted(idx, grid.ks)  # (1, nkb)
        count = gq * (grid.ke - grid.ks) + gk * (grid.qe - grid.qs) - gq * gk
        return count, count

    def key(self) -> tuple:
        return self.indices

    cost = "ng"

    def __repr__(self) -> str:
        return f"global_tokens({list(self.indices)})"


def _ints(values: Iterable[int]) -> list[int]:
    if isinstance(values, torch.Tensor):
        values = values.flatten().tolist()
    out = list(values)
    for v in out:
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(f"global_tokens: indices must be ints, got {v!r}")
    return out


def global_tokens(indices: Iterable[int]) -> GlobalTokens:
    """These tokens attend to all keys and all queries attend to them (Longformer). O(ng)."""
    return GlobalTokens(indices)
