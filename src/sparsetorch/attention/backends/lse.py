"""Attention in the band kernel's log-sum-exp contract (out in q's dtype, lse per row in log2
units, +inf for a row without keys) in plain torch:

- :func:`masked_lse`: masked dense attention through autograd, for checks and small parts;
- :func:`chunked_lse`: the same over a few keys for every row (global token columns), row
  chunks at a time, with its own backward that recomputes the scores and keeps only its
  inputs and the lse (no float32 copy of q, no (n, keys) probabilities);
- :func:`merge_lse`: the exact softmax over a union of disjoint key sets from each set's
  (out, lse), with its own backward that keeps only the parts (no float32 copies of them).

Backward of one set's ``(o, lse)``, with p = exp(s - L), o = p v, lse = L·log2(e):
``ds = p ⊙ (do vᵀ - rowsum(do ⊙ o) + dlse·log2(e))``, ``dq = scale·ds k``, ``dk = scale·dsᵀ q``,
``dv = pᵀ do``. Of the merge, with a_p = 2^(lse_p - lse), out = Σ a_p o_p and
lse = log2 Σ 2^lse_p: ``do_p = a_p·dout`` and ``dlse_p = a_p·(ln 2·(D_p - Σ_q a_q D_q) + dlse)``
with D_p = rowsum(dout ⊙ o_p).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sparsetorch.kernels.band_attention import LOG2E


def _work(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)  # float64 stays float64


def _scores(q: Tensor, k: Tensor, scale: float) -> Tensor:
    """q kᵀ · scale in the working dtype (float32, float64 for float64 inputs)."""
    work = _work(q.dtype)
    return (q.to(work) @ k.to(work).transpose(-1, -2)) * scale


def masked_lse(
    q: Tensor, k: Tensor, v: Tensor, allowed: Tensor, scale: float
) -> tuple[Tensor, Tensor]:
    """softmax(q kᵀ · scale) v over the ``allowed`` keys (a mask broadcast to (B, H, m, nk); k and
    v with H heads): (out (B, H, m, D) in q's dtype, lse (B, H, m) in log2 units, +inf for a
    row without keys, whose out is zeros); float32 work, float64 for float64 inputs."""
    scores = _scores(q, k, scale).masked_fill(~allowed, float("-inf"))
    lse = torch.logsumexp(scores, -1)  # natural units; -inf for a row without keys
    p = torch.exp(scores - torch.where(torch.isinf(lse), 0.0, lse)[..., None])
    out = (p @ v.to(p.dtype)).to(q.dtype)
    return out, torch.where(torch.isinf(lse), float("inf"), lse * LOG2E)


def _probs(q: Tensor, k: Tensor, allowed: Tensor, lse: Tensor, scale: float) -> Tensor:
    """exp(s - L) from the saved lse (log2 units): zeros where not allowed or without keys."""
    natural = torch.where(torch.isinf(lse), 0.0, lse / LOG2E)[..., None]
    return torch.exp(_scores(q, k, scale) - natural).masked_fill(~allowed, 0.0)


class _Chunked(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, allowed, scale, chunk):
        outs, lses = [], []
        for r0 in range(0, q.shape[2], chunk):
            rows = slice(r0, r0 + chunk)
            out, lse = masked_lse(q[:, :, rows], k, v, allowed[rows], scale)
            outs.append(out)
            lses.append(lse)
        lse = torch.cat(lses, 2)
        ctx.save_for_backward(q, k, v, allowed, lse)
        ctx.scale, ctx.chunk = scale, chunk
        return torch.cat(outs, 2), lse

    @staticmethod
    def backward(ctx, dout, dlse):
        q, k, v, allowed, lse = ctx.saved_tensors
        work = _work(q.dtype)
        kw, vw = k.to(work), v.to(work)
        dq = torch.empty_like(q)
        dk = torch.zeros(k.shape, dtype=work, device=k.device)
        dv = torch.zeros(v.shape, dtype=work, device=v.device)
        for r0 in range(0, q.shape[2], ctx.chunk):
            rows = slice(r0, r0 + ctx.chunk)
            qc, lc = q[:, :, rows].to(work), lse[:, :, rows]
            p = _probs(qc, kw, allowed[rows], lc, ctx.scale)  # (B, H, c, keys)
            do = dout[:, :, rows].to(work)
            dl = torch.where(torch.isinf(lc), 0.0, dlse[:, :, rows].to(work) * LOG2E)
            delta = (do * (p @ vw)).sum(-1)  # (B, H, c)
            ds = p * (do @ vw.transpose(-1, -2) - (delta - dl)[..., None])
            dq[:, :, rows] = (ds @ kw * ctx.scale).to(q.dtype)
            dk += ds.transpose(-1, -2) @ qc * ctx.scale
            dv += p.transpose(-1, -2) @ do
        return dq, dk.to(k.dtype), dv.to(v.dtype), None, None, None


def chunked_lse(
    q: Tensor, k: Tensor, v: Tensor, allowed: Tensor, scale: float, chunk: int
) -> tuple[Tensor, Tensor]:
    """:func:`masked_lse` with an (n, keys) ``allowed`` mask, ``chunk`` rows at a time, keeping
    for backward only its inputs and the lse (the scores are recomputed)."""
    return _Chunked.apply(q, k, v, allowed, scale, chunk)


class _Merge(torch.autograd.Function):
    @staticmethod
    def forward(ctx, lses, *outs):
        work = _work(outs[0].dtype)
        finite = torch.where(torch.isinf(lses), float("-inf"), lses)  # +inf (no key): -inf
        top = finite.amax(0)
        top = torch.where(torch.isinf(top), 0.0, top)  # rows without keys: every weight is 0
        weights = torch.exp2(finite - top)
        total = weights.sum(0)  # (B, H, n)
        acc = sum(w[..., None] * o.to(work) for w, o in zip(weights, outs, strict=True))
        out = (acc / torch.where(total == 0, 1.0, total)[..., None]).to(outs[0].dtype)
        lse = torch.where(total == 0, float("inf"), top + torch.log2(total))
        ctx.save_for_backward(lses, lse, *outs)
        return out, lse

    @staticmethod
    def backward(ctx, dout, dlse):
        lses, lse, *outs = ctx.saved_tensors
        work = _work(outs[0].dtype)
        keyless = torch.isinf(lses) | torch.isinf(lse)
        a = torch.where(keyless, 0.0, torch.exp2(lses - torch.where(keyless, 0.0, lse)))
        do = dout.to(work)
        dots = torch.stack([(do * o.to(work)).sum(-1) for o in outs])  # (P, B, H, n)
        mean = (a * dots).sum(0)
        dl = torch.where(torch.isinf(lse), 0.0, dlse)
        dlses = a * (math.log(2.0) * (dots - mean) + dl)
        douts = [(w[..., None] * do).to(o.dtype) for w, o in zip(a, outs, strict=True)]
        return (dlses.to(lses.dtype), *douts)


def merge_lse(outs: list[Tensor], lses: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Softmax attention over the union of disjoint key sets from each set's normalised output
    and log-sum-exp (log2 units, +inf: no key): (out, the union's lse); rows with no key in
    any set give zeros and +inf. Keeps only the parts and the lse for backward."""
    if len(outs) == 1:  # a row without keys is zeros already
        return outs[0], lses[0]
    return _Merge.apply(torch.stack(lses), *outs)


def merge(outs: list[Tensor], lses: list[Tensor]) -> Tensor:
    """:func:`merge_lse`'s output alone."""
    return merge_lse(outs, lses)[0]
