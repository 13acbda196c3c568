"""Non-finite keys and values stay where the pattern lets them reach.

The rule every backend follows: a query row allowed to attend a position whose key or value
holds NaN or ±inf outputs NaN (the whole row); every other row is computed as if that position
held finite values. Masked attention promises that a position a row may not attend never
changes the row; kernels break it for non-finite values: a probability of 0 times a NaN value
is NaN, which a matrix product spreads to every row of a tile, and SDPA's additive mask turns a
NaN score into a NaN row (all rows, on the dense backend).

So each backend computes on cleaned inputs (non-finite entries replaced by 0, :func:`split`)
and marks the rows that see a bad position: dense by a mask-vector product, reference tile by
tile, the pieces of ``bands`` by prefix sums over each band, flex on CUDA by a score bias that
its log-sum-exp shows (in the compiled call, no host synchronisation), flex on the CPU by the
reference's tiles when some position is bad. The band kernel does both itself
(``band_attention(..., contain=True)``: it marks the bad positions as it goes, no cleaned
copies, and recomputes the tiles that see one). Rows marked NaN pass no gradient back; the
other rows' gradients are those of the cleaned inputs, and a bad position's are 0.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from sparsetorch.kernels import finite_triton
from sparsetorch.kernels.band_attention import prefix_counts

# Added to the score of a bad position (flex on CUDA): its row's log-sum-exp then exceeds
# POISON / 2, which no attention score of real activations reaches.
POISON = 2.0**20


def split(k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
    """(k, v with every non-finite entry replaced by 0, bad (B, H, n): the positions whose key
    or value held one). On CUDA one Triton kernel reads k and v once
    (``torch.ops.sparsetorch.clean_nonfinite``); elsewhere :func:`split_torch`."""
    if k.device.type == "cuda" and finite_triton.unsupported(k, v) is None:
        return torch.ops.sparsetorch.clean_nonfinite(k, v)  # one pass over k and v
    return split_torch(k, v)


def split_torch(k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
    """:func:`split` in torch ops, on any device (the CUDA kernel's twin). On the CPU, where
    reading a flag costs no synchronisation, inputs without a non-finite entry come back as
    they are, with ``bad`` None (nothing to mark); not under ``torch.compile``, where reading
    the flag would break the graph."""
    eager_cpu = k.device.type == "cpu" and not torch.compiler.is_compiling()
    # a finite sum means every entry is finite (NaN and ±inf propagate; an overflow only sends
    # the call the slow way): one pass per tensor for the common case
    if eager_cpu and bool(torch.isfinite(k.sum() + v.sum())):
        return k, v, None
    finite_k, finite_v = torch.isfinite(k), torch.isfinite(v)
    bad = ~(finite_k.all(-1) & finite_v.all(-1))  # (B, H, n)
    if eager_cpu and not bool(bad.any()):
        return k, v, None
    return torch.where(finite_k, k, 0.0), torch.where(finite_v, v, 0.0), bad


def poison(out: Tensor, rows: Tensor | None) -> Tensor:
    """``out`` (B, H, n, Dv) with the rows marked in ``rows`` (B, H, n) set to NaN. On CUDA in
    eager code one Triton pass (``torch.ops.sparsetorch.fill_rows``: ``masked_fill`` there
    copies ``out`` and then fills it through a broadcast mask, 0.57 ms at n = 65536, B1 H16
    D128 bf16 on an H100, about a third of the band kernel's own time); under
    ``torch.compile`` ``masked_fill``, which Inductor fuses into its neighbours."""
    if rows is None:
        return out
    if (
        out.device.type == "cuda"
        and not torch.compiler.is_compiling()
        and finite_triton.fill_unsupported(out, rows) is None
    ):
        return torch.ops.sparsetorch.fill_rows(out, rows, True)
    return out.masked_fill(rows[..., None], float("nan"))


def rows_seeing(mask: Tensor, bad: Tensor | None) -> Tensor | None:
    """(B, H, n): the rows that a dense (n, n) ``mask`` lets attend a ``bad`` (B, H, n) key
    (None for no bad key)."""
    if bad is None:
        return None
    # only "> 0" matters: half precision suffices on GPUs (a count past 65504 is inf, still > 0)
    dtype = torch.float32 if mask.device.type == "cpu" else torch.float16
    hits = mask.to(dtype) @ bad.to(dtype).unsqueeze(-1)  # (B, H, n, 1): bad keys per row
    return hits.squeeze(-1) > 0


def band_rows_seeing(bad: Tensor | None, lo: int, hi: int, heads: int) -> Tensor | None:
    """(B, heads, n): the rows i that a band ``lo <= i - j <= hi`` (clipped to the sequence)
    lets attend a ``bad`` (B, H_kv, n) key j, by prefix sums (O(n), no (n, n) mask); each kv
    head serves ``heads / H_kv`` query heads (GQA)."""
    if bad is None:
        return None
    n = bad.shape[-1]
    counts = prefix_counts(bad)
    i = torch.arange(n, device=bad.device)
    first = (i - hi).clamp(0, n)  # keys [first, last) of row i
    last = (i - lo + 1).clamp(0, n)
    seen = (counts[..., last] - counts[..., first]) > 0  # (B, Hkv, n)
    return seen.repeat_interleave(heads // bad.shape[1], dim=1)


def split_with_bias(k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`split`'s cleaned k and v, and the score bias of :func:`flex_by_log_sum_exp`:
    (B, H, n) float32, ``POISON`` at the bad positions, 0 elsewhere. CUDA callers run it before
    their compiled call, so that the bias enters the graph as an input: torch 2.11's Inductor
    cannot lower a score_mod that reads a buffer computed in the same graph ("convert
    FlexibleLayout to FixedLayout first", seen at n = 16384, D = 128 on an H100)."""
    k, v, bad = split(k, v)
    if bad is None:  # (only where split can tell: the CPU)
        bad = torch.zeros(k.shape[:3], dtype=torch.bool, device=k.device)
    return k, v, bad.to(torch.float32) * POISON


def contained_flex(q, k, v, block_mask, scale: float, kernel_options=None, bias=None) -> Tensor:
    """``torch``'s FlexAttention over ``block_mask``. On CUDA it contains non-finite keys and
    values itself: inputs cleaned, ``POISON`` added to the scores of bad positions, the rows
    whose log-sum-exp shows it set to NaN (no gradient flows back from them: their
    probabilities are finite); all inside the caller's compiled call, or, with ``bias`` given,
    on k and v the caller already cleaned with :func:`split_with_bias`. On the CPU plain (its
    compiled FlexAttention has no log-sum-exp output): the caller contains them."""
    from torch.nn.attention.flex_attention import flex_attention

    if q.device.type == "cpu":
        return flex_attention(
            q, k, v, block_mask=block_mask, scale=scale, kernel_options=kernel_options
        )
    return flex_by_log_sum_exp(flex_attention, q, k, v, block_mask, scale, kernel_options, bias)


def flex_by_log_sum_exp(
    flex_attention: Callable, q, k, v, block_mask, scale: float, kernel_options=None, bias=None
) -> Tensor:
    """The CUDA containment of :func:`contained_flex` around the given FlexAttention function
    (compiled there; tests run it eagerly on the CPU, where eager FlexAttention returns the
    log-sum-exp)."""
    from torch.nn.attention.flex_attention import AuxRequest

    if bias is None:  # else k and v come cleaned (split_with_bias)
        k, v, bias = split_with_bias(k, v)  # bias (B, H, n)

    def score_mod(score, b, h, q_idx, kv_idx):
        return score + bias[b, h, kv_idx]

    out, aux = flex_attention(
        q,
        k,
        v,
        score_mod=score_mod,
        block_mask=block_mask,
        scale=scale,
        kernel_options=kernel_options,
        return_aux=AuxRequest(lse=True),
    )
    return poison(out, aux.lse > POISON / 2)
