"""Pure-torch twin of the CPU kernels: the same operators, signatures and results (to float
rounding: sums run in another order), built from torch's sparse CSR matmul and index ops.

It is what runs when the compiled kernels are not available, and what the tests compare the
kernels against. Everything is computed in float32 and rounded once to the output dtype, as
the kernels do. Writes into ``dense``, ``param`` and state tensors go through torch's index
ops (which bump the tensors' version counters; the kernels write in place without).
The optimizer steps take their state packed: (nnz,) tensors in the CSR order of ``vals``.
"""

from __future__ import annotations

import warnings

import torch

from sparsetorch.kernels.cpu.packed import unsigned

CHUNK = 1 << 16  # kept entries per gathered block in sddmm (memory: CHUNK x batch floats)


def _rows(ptr: torch.Tensor) -> torch.Tensor:
    n = ptr.numel() - 1
    return torch.repeat_interleave(torch.arange(n), ptr[1:] - ptr[:-1])


def _flat(ptr: torch.Tensor, idx: torch.Tensor, ncols: int) -> torch.Tensor:
    return _rows(ptr) * ncols + unsigned(idx)


def transpose_pad(x: torch.Tensor, bp: int) -> torch.Tensor:
    batch, n = x.shape
    if bp < batch:
        raise ValueError(f"bp must be >= the batch {batch}, got {bp}")
    out = torch.zeros(n, bp, dtype=torch.float32)
    out[:, :batch] = x.t().float()
    return out


def spmm(
    xt: torch.Tensor,
    batch: int,
    ptr: torch.Tensor,
    idx: torch.Tensor,
    vals: torch.Tensor,
    perm: torch.Tensor | None,
    bias: torch.Tensor | None,
    out_dtype: torch.dtype,
    tile_bytes: int = 0,
) -> torch.Tensor:
    """y (batch, rows) with y[b, r] = sum over row r's entries k of vals[perm[k]] xt[idx[k], b]."""
    nrows, n = ptr.numel() - 1, xt.shape[0]
    v = (vals if perm is None else vals[perm.long()]).float()
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        a = torch.sparse_csr_tensor(ptr, unsigned(idx), v, (nrows, n), check_invariants=False)
    y = (a @ xt[:, :batch]).t()  # (batch, rows) float32
    if bias is not None:
        y = y + bias.float()
    return y.to(out_dtype).contiguous()


def sddmm(
    dyt: torch.Tensor,
    xt: torch.Tensor,
    ptr: torch.Tensor,
    idx: torch.Tensor,
    dense: torch.Tensor | None,
    out_dtype: torch.dtype,
) -> torch.Tensor:
    """g (nnz,): g[k] = sum_b dyt[r_k, b] xt[c_k, b]; also written at dense[r_k, c_k]."""
    r, c = _rows(ptr), unsigned(idx)
    g = torch.empty(c.numel(), dtype=torch.float32)
    for s in range(0, c.numel(), CHUNK):
        e = min(s + CHUNK, c.numel())
        g[s:e] = (dyt[r[s:e]] * xt[c[s:e]]).sum(1)
    g = g.to(out_dtype)
    if dense is not None:
        dense.view(-1).index_copy_(0, r * dense.shape[1] + c, g)
    return g


def gather(dense: torch.Tensor, ptr: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return dense.reshape(-1)[_flat(ptr, idx, dense.shape[1])]


def permute(vals: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    return vals.index_select(0, perm)


def advise_huge_pages(t: torch.Tensor) -> None:
    """A memory hint only the compiled kernels give (no effect on results)."""


def fill_kept(dense: torch.Tensor, ptr: torch.Tensor, idx: torch.Tensor, value: float) -> None:
    dense.view(-1).index_fill_(0, _flat(ptr, idx, dense.shape[1]), value)


def _kept(param, grad, grad_packed, ptr, idx, vals, maximize):
    """(flat positions, float32 gradient, float32 weights) of the kept entries, CSR order; the
    gradient negated under ``maximize``."""
    flat = _flat(ptr, idx, param.shape[1])
    g = (grad if grad_packed else grad.reshape(-1)[flat]).float()
    return flat, (-g if maximize else g), vals.float()  # the kept weights, as the kernel reads


def adam_step(
    param: torch.Tensor,
    grad: torch.Tensor,
    grad_packed: bool,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    max_exp_avg_sq: torch.Tensor | None,
    ptr: torch.Tensor,
    idx: torch.Tensor,
    vals: torch.Tensor,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled: bool,
    maximize: bool,
    bias_correction1: float,
    bias_correction2_sqrt: float,
) -> None:
    """torch.optim.Adam's single-tensor update, on the kept entries only; the state tensors are
    packed (nnz,), CSR order."""
    flat, g, w = _kept(param, grad, grad_packed, ptr, idx, vals, maximize)
    p_ = param.view(-1)
    if weight_decay != 0:
        if decoupled:
            w = w * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * w
    m = exp_avg.float()
    m = m + (1 - beta1) * (g - m)
    v = exp_avg_sq.float() * beta2 + (1 - beta2) * g * g
    vd = v
    if max_exp_avg_sq is not None:
        vd = torch.maximum(max_exp_avg_sq.float(), v)
        max_exp_avg_sq.copy_(vd)
    denom = vd.sqrt() / bias_correction2_sqrt + eps
    w = (w + (-lr / bias_correction1) * m / denom).to(param.dtype)
    exp_avg.copy_(m)
    exp_avg_sq.copy_(v)
    p_.index_copy_(0, flat, w)
    vals.copy_(w)


def sgd_step(
    param: torch.Tensor,
    grad: torch.Tensor,
    grad_packed: bool,
    momentum_buffer: torch.Tensor | None,
    first: bool,
    ptr: torch.Tensor,
    idx: torch.Tensor,
    vals: torch.Tensor,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
) -> None:
    """torch.optim.SGD's single-tensor update, on the kept entries only; the momentum buffer
    is packed (nnz,), CSR order."""
    flat, g, w = _kept(param, grad, grad_packed, ptr, idx, vals, maximize)
    p_ = param.view(-1)
    if weight_decay != 0:
        g = g + weight_decay * w
    if momentum_buffer is not None:
        b = g if first else momentum_buffer.float() * momentum + (1 - dampening) * g
        momentum_buffer.copy_(b)
        b = momentum_buffer.float()
        g = g + momentum * b if nesterov else b
    w = (w + (-lr) * g).to(param.dtype)
    p_.index_copy_(0, flat, w)
    vals.copy_(w)
