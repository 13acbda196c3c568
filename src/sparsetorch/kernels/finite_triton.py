"""Non-finite keys and values cleaned in one pass (Triton): k, v (B, H, n, D) -> k and v with
every NaN / ±inf entry replaced by 0, and bad (B, H, n): the positions whose key or value row
held one. What :func:`sparsetorch.attention.backends.nonfinite.split` computes, for CUDA.

Written with torch ops that is ``isfinite``, ``all`` over D and ``where`` per tensor: five passes
over (B, H, n, D) and two (B, H, n, D) boolean temporaries for each of k and v. At n = 65536,
B1 H16 D128 bf16 (k and v 256 MiB each) those ops took 2.53 ms on an H100 (torch 2.11,
2026-12-07); this kernel, where one program reads a run of rows of k and of v once and writes
each cleaned row and one flag per position, takes 0.363 ms there: 1 GiB moved at 2.96 TB/s,
the rate of two plain copies of k and v in the same run.

As ``torch.ops.sparsetorch.clean_nonfinite`` (opaque to ``torch.compile``, recorded by CUDA
graphs) with a backward, one launch too (``clean_nonfinite_grad``): the gradient of a cleaned
entry is its input's where the input was finite, 0 where it was not. The twin is
``nonfinite.split_torch``; the tests run this kernel in Triton's CPU interpreter against the
same torch ops.

The rows that may see a bad position are then set to NaN in the attention's output
(``nonfinite.poison``): ``fill_rows`` (``torch.ops.sparsetorch.fill_rows``) does it in one pass
over the rows with the same row walk, where ``masked_fill`` copies the output and then fills it
through a broadcast mask: 0.185 against 0.567 ms at the size above (H100, 2026-12-07). The
band kernel needs neither: it contains non-finite keys and values itself
(``band_attention(..., contain=True)``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sparsetorch.kernels.interpret import interpreting

try:  # Triton is optional: present with CUDA builds of torch
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - CPU machines
    triton = None

DTYPES = (torch.float16, torch.bfloat16, torch.float32)
MAX_HEAD_DIM = 256


def unsupported(k: Tensor, v: Tensor) -> str | None:
    """None if the kernel takes these k and v (B, H, n, D); else why not."""
    if triton is None:
        return "Triton is not installed"
    if k.device.type != "cuda" and not interpreting():
        return "needs a CUDA device (or TRITON_INTERPRET=1)"
    if k.dim() != 4 or v.dim() != 4 or k.shape[:3] != v.shape[:3]:
        return f"needs k and v (B, H, n, D) of one (B, H, n), got {tuple(k.shape)} {tuple(v.shape)}"
    if k.dtype not in DTYPES or v.dtype not in DTYPES:
        return f"needs float16/bfloat16/float32, got {k.dtype}/{v.dtype}"
    if max(k.shape[-1], v.shape[-1]) > MAX_HEAD_DIM:
        return f"head dims up to {MAX_HEAD_DIM}, got {k.shape[-1]} and {v.shape[-1]}"
    if k.device != v.device:
        return "k and v on different devices"
    return None


if triton is not None:

    @triton.jit
    def _rows(ROWS, H, N, BLOCK_R: tl.constexpr):
        """This program's run of flat rows of (B, H, n): (rows, in range, b, h, i), (BR,)."""
        rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
        return rows, rows < ROWS, rows // (N * H), (rows // N) % H, rows % N

    @triton.jit
    def _load_rows(ptr, ok, b, h, i, stride_b, stride_h, stride_n, stride_d, D, BLOCK_D):
        """Rows (b, h, i) of a (B, H, n, D) tensor of any strides: ((BR, BD) values, 0 past D
        and past the last row; the mask)."""
        offs_d = tl.arange(0, BLOCK_D)  # (BD,)
        mask = ok[:, None] & (offs_d < D)[None, :]  # (BR, BD)
        start = b * stride_b + h * stride_h + i * stride_n  # (BR,) int64
        x = tl.load(ptr + start[:, None] + offs_d[None, :] * stride_d, mask=mask, other=0.0)
        return x, mask

    @triton.jit
    def _store_rows(ptr, rows, x, mask, D, BLOCK_D):
        """``x`` (BR, BD) into rows ``rows`` of a contiguous (rows, D) tensor."""
        tl.store(ptr + rows[:, None] * D + tl.arange(0, BLOCK_D)[None, :], x, mask=mask)

    @triton.jit
    def _finite(x):
        return tl.abs(x.to(tl.float32)) < float("inf")  # False for NaN and ±inf

    @triton.jit
    def _clean_rows(
        src, dst, rows, ok, b, h, i, stride_b, stride_h, stride_n, stride_d,
        D: tl.constexpr, BLOCK_D: tl.constexpr,
    ):  # fmt: skip
        """Rows (b, h, i) of one tensor cleaned into ``dst`` (contiguous, row ``rows``);
        returns (BLOCK_R,): whether each row held a non-finite entry."""
        x, mask = _load_rows(src, ok, b, h, i, stride_b, stride_h, stride_n, stride_d, D, BLOCK_D)
        finite = _finite(x)
        _store_rows(dst, rows, tl.where(finite, x, 0.0), mask, D, BLOCK_D)
        return tl.max((mask & ~finite).to(tl.int32), axis=1) > 0

    @triton.jit
    def _clean_kernel(
        k_ptr, v_ptr, k_out, v_out, bad_ptr,
        ROWS, H, N,
        sk_b, sk_h, sk_n, sk_d, sv_b, sv_h, sv_n, sv_d,
        DK: tl.constexpr, DV: tl.constexpr,
        BLOCK_DK: tl.constexpr, BLOCK_DV: tl.constexpr, BLOCK_R: tl.constexpr,
    ):  # fmt: skip
        rows, ok, b, h, i = _rows(ROWS, H, N, BLOCK_R)
        bad_k = _clean_rows(k_ptr, k_out, rows, ok, b, h, i, sk_b, sk_h, sk_n, sk_d, DK, BLOCK_DK)
        bad_v = _clean_rows(v_ptr, v_out, rows, ok, b, h, i, sv_b, sv_h, sv_n, sv_d, DV, BLOCK_DV)
        tl.store(bad_ptr + rows, bad_k | bad_v, mask=ok)

    @triton.jit
    def _pass_rows(
        src, grad, dst, rows, ok, b, h, i, stride_b, stride_h, stride_n, stride_d,
        g_b, g_h, g_n, g_d, D: tl.constexpr, BLOCK_D: tl.constexpr,
    ):  # fmt: skip
        """dst (contiguous) = grad where ``src`` is finite, 0 where it is not, for rows (b, h,
        i)."""
        x, mask = _load_rows(src, ok, b, h, i, stride_b, stride_h, stride_n, stride_d, D, BLOCK_D)
        g, _ = _load_rows(grad, ok, b, h, i, g_b, g_h, g_n, g_d, D, BLOCK_D)
        _store_rows(dst, rows, tl.where(_finite(x), g, 0.0), mask, D, BLOCK_D)

    @triton.jit
    def _grad_kernel(
        k_ptr, v_ptr, gk_ptr, gv_ptr, k_out, v_out,
        ROWS, H, N,
        sk_b, sk_h, sk_n, sk_d, sv_b, sv_h, sv_n, sv_d,
        gk_b, gk_h, gk_n, gk_d, gv_b, gv_h, gv_n, gv_d,
        DK: tl.constexpr, DV: tl.constexpr,
        BLOCK_DK: tl.constexpr, BLOCK_DV: tl.constexpr, BLOCK_R: tl.constexpr,
    ):  # fmt: skip
        rows, ok, b, h, i = _rows(ROWS, H, N, BLOCK_R)
        _pass_rows(
            k_ptr, gk_ptr, k_out, rows, ok, b, h, i, sk_b, sk_h, sk_n, sk_d,
            gk_b, gk_h, gk_n, gk_d, DK, BLOCK_DK,
        )  # fmt: skip
        _pass_rows(
            v_ptr, gv_ptr, v_out, rows, ok, b, h, i, sv_b, sv_h, sv_n, sv_d,
            gv_b, gv_h, gv_n, gv_d, DV, BLOCK_DV,
        )  # fmt: skip

    @triton.jit
    def _fill_kernel(
        x_ptr, marks_ptr, out_ptr,
        ROWS, H, N,
        sx_b, sx_h, sx_n, sx_d,
        D: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_R: tl.constexpr, NAN: tl.constexpr,
    ):  # fmt: skip
        """out = x with the rows marked in ``marks`` (contiguous bool (B, H, n)) NaN
        (``NAN``) or 0."""
        rows, ok, b, h, i = _rows(ROWS, H, N, BLOCK_R)
        x, mask = _load_rows(x_ptr, ok, b, h, i, sx_b, sx_h, sx_n, sx_d, D, BLOCK_D)
        hit = tl.load(marks_ptr + rows, mask=ok, other=0) != 0  # (BR,)
        fill = float("nan") if NAN else 0.0
        _store_rows(out_ptr, rows, tl.where(hit[:, None], fill, x), mask, D, BLOCK_D)


def _launch(kernel, x: Tensor, tensors, strides, block_rows: int, dims: dict, **constants):
    """``kernel`` over the flat rows of (B, H, n) of ``x`` (B, H, n, D), ``block_rows`` per
    program; ``dims`` the head dims by name ({"DK": ...}: also passed as BLOCK_DK, the next
    power of two), ``constants`` the kernel's other compile-time arguments."""
    bsz, heads, n = x.shape[:3]
    rows = bsz * heads * n
    if rows == 0:
        return
    blocks = {f"BLOCK_{name}": triton.next_power_of_2(d) for name, d in dims.items()}
    kernel[(math.ceil(rows / block_rows),)](
        *tensors, rows, heads, n, *strides,
        **dims, **blocks, **constants, BLOCK_R=block_rows, num_warps=4,
    )  # fmt: skip


def clean_nonfinite_triton(k: Tensor, v: Tensor, block_rows: int = 32):
    """(k, v cleaned, contiguous; bad (B, H, n) bool) for k (B, H, n, Dk), v (B, H, n, Dv) of
    any strides, in one kernel launch."""
    reason = unsupported(k, v)
    if reason is not None:
        raise ValueError(f"clean_nonfinite: {reason}")
    k_out = torch.empty(k.shape, dtype=k.dtype, device=k.device)
    v_out = torch.empty(v.shape, dtype=v.dtype, device=v.device)
    bad = torch.empty(k.shape[:3], dtype=torch.bool, device=k.device)
    tensors = (k, v, k_out, v_out, bad)
    strides = (*k.stride(), *v.stride())
    _launch(_clean_kernel, k, tensors, strides, block_rows, {"DK": k.shape[-1], "DV": v.shape[-1]})
    return k_out, v_out, bad


def clean_grad_triton(k: Tensor, v: Tensor, grad_k: Tensor, grad_v: Tensor, block_rows: int = 32):
    """The backward of :func:`clean_nonfinite_triton` in one launch: (grad_k, grad_v) where k
    and v were finite, 0 where they were not; contiguous, any input strides."""
    out_k = torch.empty(k.shape, dtype=grad_k.dtype, device=k.device)
    out_v = torch.empty(v.shape, dtype=grad_v.dtype, device=v.device)
    strides = (*k.stride(), *v.stride(), *grad_k.stride(), *grad_v.stride())
    tensors = (k, v, grad_k, grad_v, out_k, out_v)
    _launch(_grad_kernel, k, tensors, strides, block_rows, {"DK": k.shape[-1], "DV": v.shape[-1]})
    return out_k, out_v


def _output_unsupported(x: Tensor) -> str | None:
    """None if the fill kernels take this x (B, H, n, D); else why not."""
    if triton is None:
        return "Triton is not installed"
    if x.device.type != "cuda" and not interpreting():
        return "needs a CUDA device (or TRITON_INTERPRET=1)"
    if x.dim() != 4:
        return f"needs x (B, H, n, D), got {tuple(x.shape)}"
    if x.dtype not in DTYPES or x.shape[-1] > MAX_HEAD_DIM:
        return (
            f"needs float16/bfloat16/float32 and D <= {MAX_HEAD_DIM}, got {x.dtype}, {x.shape[-1]}"
        )
    return None


def fill_unsupported(x: Tensor, rows: Tensor) -> str | None:
    """None if :func:`fill_rows_triton` takes this x (B, H, n, D) and rows (B, H, n)."""
    reason = _output_unsupported(x)
    if reason is not None:
        return reason
    if rows.shape != x.shape[:3] or rows.dtype != torch.bool:
        return f"needs bool rows (B, H, n) for x {tuple(x.shape)}, got {rows.dtype} {tuple(rows.shape)}"
    if rows.device != x.device:
        return "x and rows on different devices"
    return None


def _fill(x: Tensor, marks: Tensor, nan: bool, block_rows: int) -> Tensor:
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    _launch(
        _fill_kernel, x, (x, marks.contiguous(), out), x.stride(), block_rows,
        {"D": x.shape[-1]}, NAN=bool(nan),
    )  # fmt: skip
    return out


def fill_rows_triton(x: Tensor, rows: Tensor, nan: bool, block_rows: int = 32) -> Tensor:
    """x (B, H, n, D), any strides, with the rows marked in ``rows`` (B, H, n) bool set to NaN
    (``nan``) or 0; contiguous, one pass: ``x.masked_fill(rows[..., None], value)``, which on
    CUDA copies x and then fills it through a broadcast mask (0.57 ms at 256 MiB on an H100,
    2026-12-07, three times a copy's time)."""
    reason = fill_unsupported(x, rows)
    if reason is not None:
        raise ValueError(f"fill_rows: {reason}")
    return _fill(x, rows, nan, block_rows)


@torch.library.custom_op("sparsetorch::fill_rows", mutates_args=())
def fill_rows(x: Tensor, rows: Tensor, nan: bool) -> Tensor:
    """``fill_rows_triton`` as ``torch.ops.sparsetorch.fill_rows``; its gradient is the
    incoming one with the marked rows 0 (as ``masked_fill``'s)."""
    return fill_rows_triton(x, rows, nan)


@fill_rows.register_fake
def _fill_rows_fake(x, rows, nan):
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


def _fill_setup_context(ctx, inputs, output):
    ctx.save_for_backward(inputs[1])


def _fill_backward(ctx, grad):
    (rows,) = ctx.saved_tensors
    return torch.ops.sparsetorch.fill_rows(grad, rows, False), None, None


fill_rows.register_autograd(_fill_backward, setup_context=_fill_setup_context)


@torch.library.custom_op("sparsetorch::clean_nonfinite", mutates_args=())
def clean_nonfinite(k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``clean_nonfinite_triton`` as ``torch.ops.sparsetorch.clean_nonfinite``."""
    return clean_nonfinite_triton(k, v)


@clean_nonfinite.register_fake
def _clean_nonfinite_fake(k, v):
    return (
        torch.empty(k.shape, dtype=k.dtype, device=k.device),
        torch.empty(v.shape, dtype=v.dtype, device=v.device),
        k.new_empty(k.shape[:3], dtype=torch.bool),
    )


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


@torch.library.custom_op("sparsetorch::clean_nonfinite_grad", mutates_args=())
def clean_nonfinite_grad(
    k: Tensor, v: Tensor, grad_k: Tensor, grad_v: Tensor
) -> tuple[Tensor, Tensor]:
    """``clean_grad_triton`` as ``torch.ops.sparsetorch.clean_nonfinite_grad``."""
    return clean_grad_triton(k, v, grad_k, grad_v)


@clean_nonfinite_grad.register_fake
def _clean_nonfinite_grad_fake(k, v, grad_k, grad_v):
    return (
        torch.empty(k.shape, dtype=grad_k.dtype, device=k.device),
        torch.empty(v.shape, dtype=grad_v.dtype, device=v.device),
    )


def _backward(ctx, grad_k, grad_v, _grad_bad):
    k, v = ctx.saved_tensors
    if grad_k is None or grad_v is None:  # one of them unused: torch ops for the other
        return tuple(
            None if g is None else torch.where(torch.isfinite(x), g, 0.0)
            for x, g in ((k, grad_k), (v, grad_v))
        )
    return torch.ops.sparsetorch.clean_nonfinite_grad(k, v, grad_k, grad_v)


clean_nonfinite.register_autograd(_backward, setup_context=_setup_context)
