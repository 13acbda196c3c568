"""Global tokens beside bands (Longformer's ``local(w) | global_tokens(G)``, its causal form
``causal() & (local(w) | global_tokens(G))``, and global tokens joined to any union of
periodic bands) for the ``bands`` backend.

Such a pattern P is its base B (P without the global tokens, which the band kernel runs piece
by piece) plus pairs on the tokens' rows and columns only: for ``B | global_tokens(G)`` and
``A & (B | global_tokens(G))`` (A without global tokens, base ``A & B``), every pair of P
outside the base has its query or its key in G, and the base lies inside P. So:

- every row attends, besides its base keys, the keys in G that P allows and the base does
  not (an (n, |G|) score matrix in float32, merged with the base's output by log-sum-exp);
- the rows in G attend every key P allows them ((|G|, n) scores, dense attention); their
  rows replace what the merge gave.

Both extra parts cost O(n·|G|·D), against the base's O(n·(w + tile)·D).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from sparsetorch.attention.algebra import Complement, Intersection, Union, intersection, union
from sparsetorch.attention.backends.lse import chunked_lse
from sparsetorch.attention.pattern import AttentionPattern
from sparsetorch.attention.tokens import GlobalTokens

ROW_CHUNK = 8192  # rows of float32 scores per step of the token columns
KEPT = 16  # index tensors and masks kept per token split (one per device, two per length)


@dataclass(frozen=True)
class Tokens:
    """``pattern`` = ``base`` ∪ (``pattern`` on the rows and columns of ``indices``), with
    ``base`` inside ``pattern`` and free of global tokens. The token indices and the masks
    are made once per device and length (a tensor made from a list on a GPU is a copy the
    host waits for)."""

    pattern: AttentionPattern
    base: AttentionPattern
    indices: tuple[int, ...]
    _kept: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def _made(self, key: tuple, make):
        found = self._kept.get(key)
        if found is None:
            found = make()
            if not torch.compiler.is_compiling():  # a traced (fake) tensor must not be kept
                if len(self._kept) >= KEPT:  # lengths that change call by call (decoding)
                    self._kept.clear()
                self._kept[key] = found
        return found

    def index(self, device) -> Tensor:
        """(|G|,) int64: the token positions."""
        device = torch.device(device)
        return self._made(
            ("index", device), lambda: torch.tensor(self.indices, dtype=torch.int64, device=device)
        )

    def column_mask(self, n: int, device) -> Tensor:
        """(n, |G|): the token keys each row attends beyond its base keys."""

        def make():
            i, j = torch.arange(n, device=device)[:, None], self.index(device)[None, :]
            extra = self.pattern.fn(n, device)(i, j) & ~self.base.fn(n, device)(i, j)
            return torch.broadcast_to(extra, (n, len(self.indices))).contiguous()

        return self._made(("columns", n, torch.device(device)), make)

    def row_mask(self, n: int, device) -> Tensor:
        """(|G|, n): every key each token row attends."""

        def make():
            i, j = self.index(device)[:, None], torch.arange(n, device=device)[None, :]
            allowed = self.pattern.fn(n, device)(i, j)
            return torch.broadcast_to(allowed, (len(self.indices), n)).contiguous()

        return self._made(("rows", n, torch.device(device)), make)

    def columns(self, q: Tensor, k: Tensor, v: Tensor, scale: float) -> tuple[Tensor, Tensor]:
        """Attention of every row over its extra token keys: (out (B, H, n, D) in q's dtype,
        lse (B, H, n) in log2 units, +inf for a row without one). Scores and lse in float32
        (float64 for float64 inputs), ``ROW_CHUNK`` rows at a time."""
        n, group = q.shape[2], q.shape[1] // k.shape[1]
        mask = self.column_mask(n, q.device)  # (n, g)
        idx = self.index(q.device)
        kg = k[:, :, idx].repeat_interleave(group, 1)  # (B, H, g, D)
        vg = v[:, :, idx].repeat_interleave(group, 1)
        return chunked_lse(q, kg, vg, mask, scale, ROW_CHUNK)

    def rows(self, q: Tensor, k: Tensor, v: Tensor, out: Tensor, scale: float) -> Tensor:
        """``out`` with the token rows replaced by their attention over every key they may
        see (zeros for a token row without one)."""
        n = q.shape[2]
        idx = self.index(q.device)
        mask = self.row_mask(n, q.device)  # (g, n)
        empty = ~mask.any(-1)  # such a row attends everything, then is zeroed (finite grads)
        # the query heads sharing a kv head become rows of one head (no copy of k and v, no
        # enable_gqa, whose masked form a fused kernel may not take)
        b, heads, g, d = q.shape[0], q.shape[1], len(self.indices), q.shape[-1]
        group = heads // k.shape[1]
        rows = q[:, :, idx].reshape(b, k.shape[1], group * g, d)  # (B, H_kv, group·g, D)
        allowed = (mask | empty[:, None]).repeat(group, 1)  # (group·g, n)
        attn = F.scaled_dot_product_attention(rows, k, v, attn_mask=allowed, scale=scale)
        attn = attn.reshape(b, heads, g, v.shape[-1])
        attn = torch.where(empty[:, None], 0.0, attn).to(out.dtype)  # (B, H, g, Dv)
        return out.index_copy(2, idx, attn)

    def seen(self, bad: Tensor, base_seen: Tensor | None, heads: int) -> Tensor:
        """(B, heads, n): the rows that may attend a ``bad`` (B, H_kv, n) position, given the
        rows the base lets see one."""
        n, group = bad.shape[-1], heads // bad.shape[1]
        idx = self.index(bad.device)
        # counts of bad keys as float32 products (exact below 2**24 keys), no (n, |G|) per head
        cols = bad[..., idx].float() @ self.column_mask(n, bad.device).float().T > 0  # (B,Hkv,n)
        seen = cols.repeat_interleave(group, 1)  # (B, heads, n)
        if base_seen is not None:
            seen = seen | base_seen
        rows = bad.float() @ self.row_mask(n, bad.device).float().T > 0  # (B, H_kv, g)
        return seen.index_copy(2, idx, rows.repeat_interleave(group, 1))


@functools.lru_cache(maxsize=256)
def split_tokens(pattern: AttentionPattern) -> Tokens | None:
    """The pattern as its base and its global tokens (:class:`Tokens`), for ``B |
    global_tokens(G)`` and ``A & (B | global_tokens(G))`` with A and B free of global tokens;
    None for any other pattern."""
    if isinstance(pattern, Union):
        tokens = [p for p in pattern.parts if isinstance(p, GlobalTokens)]
        rest = [p for p in pattern.parts if not isinstance(p, GlobalTokens)]
        if not tokens or not rest or any(_has_tokens(p) for p in rest):
            return None
        indices = sorted({i for t in tokens for i in t.indices})
        return Tokens(pattern, functools.reduce(union, rest), tuple(indices))
    if isinstance(pattern, Intersection):
        inner = [(p, split_tokens(p)) for p in pattern.parts if _has_tokens(p)]
        if len(inner) != 1 or inner[0][1] is None:
            return None
        part, found = inner[0]
        others = [p for p in pattern.parts if p is not part]
        base = functools.reduce(intersection, [*others, found.base])
        return Tokens(pattern, base, found.indices)
    return None


def _has_tokens(pattern: AttentionPattern) -> bool:
    if isinstance(pattern, GlobalTokens):
        return True
    if isinstance(pattern, Complement):
        return _has_tokens(pattern.part)
    return any(_has_tokens(p) for p in getattr(pattern, "parts", ()))
