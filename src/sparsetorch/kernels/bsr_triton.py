"""Block-sparse (BSR) linear in Triton: y = x @ W.T + b with W (out, in) stored as its nonzero
(bs, bs) blocks; x (M, in) -> y (M, out), float16/bfloat16, fp32 accumulation.

The weight is a :class:`sparsetorch.formats.BSR` with square blocks (``BSR.from_dense(w, (bs,
bs))``): ``values`` (nnzb, bs, bs) row-major blocks of W, ``crow`` = its ``row_ptr`` (out/bs +
1,) block-row pointers, ``col`` = its ``col_indices`` (nnzb,) block columns; bs in {16, 32, 64,
128} dividing both dims.

One program computes one output tile: one W block row (bs output features) x BLOCK_M rows of
x, looping over that block row's nonzero blocks (tl.dot, fp32 accumulator). Empty block rows
write zeros (or the bias). ``W_LEFT`` picks the MMA orientation (autotuned): acc^T (bs,
BLOCK_M) = W_blk @ x_tile^T puts the weight block in the MMA's M slot and the x tile in its wide
N slot (the natural y^T = W x^T; wgmma wants M >= 64), acc (BLOCK_M, bs) = x_tile @ W_blk^T
suits bs < 64.

Scheduling (what makes it fast): program ids run block-row-fastest, so all W block rows for one
x tile (BLOCK_M x in: 4 MB at BLOCK_M = 256, in = 8192, bf16) execute together while that tile
sits in L2. x is then read from DRAM once instead of once per W block row touching it (torch's
row-major order re-reads it ~density * out/bs times: 6.4x at 5%, bs 64, 8192^2). W (nnzb * bs^2
elements) is re-read from L2 by every x tile; it fits L2 (50 MB on H100) up to ~25% density at
8192^2, and its loads ask to stay there (evict_last) while y, written once, is stored streaming
(.cs) so it does not push x and W out.

Roofline, 8192^3 bf16 on H100 (~990 TFLOP/s dense peak, ~3.3 TB/s HBM; dense cuBLAS takes
~1.3 ms): DRAM traffic is x read once (128 MB) + y written once (128 MB) + W (6.4 MB at 5%),
~80 us whatever the density; tensor-core work is density * 1.1 TFLOP, ~60 us at 5% and ~120 us
at 10% near peak. But the binding limit at low density is neither: it is the L2 -> SM traffic
for x. Every stored block loads its (BLOCK_M, bs) slice of x for each x tile, so the SMs read
nnzb * bs * M * 2 bytes from L2, whatever BLOCK_M: 859 MB at 5% and 1.7 GB at 10% (block 64,
8192^3), 6.4x and 12.8x the size of x (twice that at bs 32, which is why bs 32 is slower). The
kernel's H100 times (8.75x dense at 5%, 4.58x at 10%) are that traffic at 6.2 and 5.5 TB/s,
about what the SMs can read from L2: ``benchmarks/l2_read.py`` measures that rate and the BSR
table in ``benchmarks/gpu.py`` the kernel's. Larger blocks read x fewer times (bs 128 halves it); a
row-by-row schedule cannot avoid it for scattered blocks, since two block rows rarely share a
column block. 25% is compute bound like dense (~4x).

Compiled for sm_90 (Triton 3.6, without a GPU: tests/kernels/test_sm90_compile.py): the block
index, x tile and W block are all loaded by cp.async a stage ahead, the MMA is wgmma with one
group in flight, no register spills; 48-80 KB of shared memory at BLOCK_M 128-256, bs 64 (2-4
programs per SM). x tiles vectorise along their contiguous dim when M (column-major x) or the
row stride (row-major x) is a multiple of 16; otherwise loads are scalar and slow (still
correct).

Autotuned (BLOCK_M, W_LEFT, num_warps, num_stages) per (M bucket, in, out, bs, density bucket,
x row- or column-major, dtype). Under TRITON_INTERPRET=1 (CPU tests) a fixed ``config`` is used.
"""

from __future__ import annotations

import math

import torch
from torch._subclasses.fake_tensor import is_fake
from torch.utils.weak import WeakIdKeyDictionary

from sparsetorch.formats._compressed import compress_rows, expand_rows
from sparsetorch.formats.bsr import stored_blocks
from sparsetorch.kernels.interpret import interpreting

try:  # Triton is optional: present with CUDA builds of torch
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - CPU machines
    triton = None

BLOCK_SIZES = (16, 32, 64, 128)
_SMEM_BUDGET = 220 * 1024  # bytes of shared memory a config may use (H100: 227 KB)


def _smem_bytes(block_m: int, bs: int, stages: int) -> int:
    """Operand buffers Triton's pipeliner allocates (checked on sm_90 compiles): the block
    index is loaded one stage ahead, so num_stages 3 and 4 give 2 buffers, 5 gives 3."""
    return max(2, stages - 2) * (block_m * bs + bs * bs) * 2


def available() -> bool:
    return triton is not None


def m_key(m: int) -> int:
    """Autotune bucket of the row count: the next power of two (16 at least)."""
    return max(16, 1 << max(0, m - 1).bit_length())


def density_key(nnzb: int, block_rows: int) -> int:
    """Autotune bucket of the mean nonzero blocks per block row: its bit length (0 = empty)."""
    return int(nnzb / max(1, block_rows) + 0.5).bit_length()


def choose_blocksize(weight: torch.Tensor, slack: float = 1.5) -> int | None:
    """Largest block size in BLOCK_SIZES dividing both dims whose stored elements (nonzero
    blocks * bs^2) are at most ``slack`` times those of the finest dividing block size; bigger
    blocks run fewer, larger MMAs, but zero fill inside them is work too. None if none divides.
    """
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D (out, in), got shape {tuple(weight.shape)}")
    if slack < 1:
        raise ValueError(f"slack must be >= 1, got {slack}")
    rows, cols = weight.shape
    sizes = [b for b in BLOCK_SIZES if rows % b == 0 and cols % b == 0]
    if not sizes:
        return None
    nonzero = weight != 0
    stored = {b: int(stored_blocks(nonzero, (b, b)).sum()) * b * b for b in sizes}
    floor = stored[sizes[0]]
    return max(b for b in sizes if stored[b] <= slack * floor)


def _check(x, values, crow, col, bias, out_features) -> int:
    if x.dim() != 2:
        raise ValueError(f"x must be 2-D (M, in), got shape {tuple(x.shape)}")
    if x.dtype not in (torch.float16, torch.bfloat16):
        raise TypeError(f"x must be float16 or bfloat16, got {x.dtype}")
    if values.dim() != 3 or values.shape[1] != values.shape[2]:
        raise ValueError(f"values must be square blocks (nnzb, bs, bs), got {tuple(values.shape)}")
    bs = values.shape[1]
    if bs not in BLOCK_SIZES:
        raise ValueError(f"block size must be one of {BLOCK_SIZES}, got {bs}")
    if values.dtype != x.dtype:
        raise TypeError(f"values dtype {values.dtype} must match x dtype {x.dtype}")
    if out_features % bs or x.shape[1] % bs:
        raise ValueError(
            f"block size {bs} must divide out_features={out_features} and in={x.shape[1]}"
        )
    if crow.shape != (out_features // bs + 1,):
        raise ValueError(
            f"crow must have out_features/bs + 1 = {out_features // bs + 1} entries, "
            f"got shape {tuple(crow.shape)}"
        )
    if col.shape != (values.shape[0],):
        raise ValueError(f"col must have nnzb = {values.shape[0]} entries, got {tuple(col.shape)}")
    if crow.dtype not in (torch.int32, torch.int64) or col.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"crow/col must be int32 or int64, got {crow.dtype}/{col.dtype}")
    if bias is not None and bias.shape != (out_features,):
        raise ValueError(f"bias must have shape ({out_features},), got {tuple(bias.shape)}")
    tensors = (x, values, crow, col) + ((bias,) if bias is not None else ())
    if len({t.device for t in tensors}) != 1:
        raise ValueError("x, values, crow, col and bias must be on one device")
    if not values.is_contiguous():
        raise ValueError("values must be contiguous (nnzb, bs, bs)")
    return bs


if triton is not None:

    @triton.jit(do_not_specialize=["M_KEY", "K_KEY", "DENSITY_KEY", "X_ROW_MAJOR_KEY"])
    def _bsr_kernel(
        x_ptr, v_ptr, crow_ptr, col_ptr, b_ptr, y_ptr,
        M, BLOCK_ROWS,
        stride_xm, stride_xk, stride_ym, stride_yn,
        M_KEY, K_KEY, DENSITY_KEY, X_ROW_MAJOR_KEY,  # autotune keys only (buckets, see below)
        BS: tl.constexpr, HAS_BIAS: tl.constexpr,
        BLOCK_M: tl.constexpr, W_LEFT: tl.constexpr,
    ):  # fmt: skip
        pid = tl.program_id(0)
        row = pid % BLOCK_ROWS  # W block row: fastest, so one x tile serves all of them from L2
        pid_m = pid // BLOCK_ROWS
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # (BM,) rows of x / y
        offs_b = tl.arange(0, BS)  # (BS,) within a block
        m_ok = offs_m < M
        x_rows = x_ptr + offs_m.to(tl.int64) * stride_xm  # (BM,) row starts
        start = tl.load(crow_ptr + row)
        end = tl.load(crow_ptr + row + 1)
        if W_LEFT:
            acc = tl.zeros((BS, BLOCK_M), dtype=tl.float32)  # (out block, BM): y^T tile
        else:
            acc = tl.zeros((BLOCK_M, BS), dtype=tl.float32)  # (BM, out block): y tile
        w_blk = v_ptr + start.to(tl.int64) * (BS * BS)  # first block of the row (64-bit)
        for i in range(start, end):
            k = tl.load(col_ptr + i).to(tl.int64) * BS + offs_b  # (BS,) input features
            if W_LEFT:
                w = tl.load(
                    w_blk + offs_b[:, None] * BS + offs_b[None, :], eviction_policy="evict_last"
                )  # (out, k)
                xt = tl.load(
                    x_rows[None, :] + k[:, None] * stride_xk, mask=m_ok[None, :], other=0.0
                )  # (k, BM)
                acc = tl.dot(w, xt, acc)
            else:
                wt = tl.load(
                    w_blk + offs_b[:, None] + offs_b[None, :] * BS, eviction_policy="evict_last"
                )  # (k, out) = W^T
                xs = tl.load(
                    x_rows[:, None] + k[None, :] * stride_xk, mask=m_ok[:, None], other=0.0
                )  # (BM, k)
                acc = tl.dot(xs, wt, acc)
            w_blk += BS * BS
        offs_n = row * BS + offs_b  # (BS,) output features
        if W_LEFT:
            if HAS_BIAS:
                acc += tl.load(b_ptr + offs_n).to(tl.float32)[:, None]
            y_ptrs = y_ptr + offs_m.to(tl.int64)[None, :] * stride_ym + offs_n[:, None] * stride_yn
            tl.store(
                y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=m_ok[None, :], cache_modifier=".cs"
            )
        else:
            if HAS_BIAS:
                acc += tl.load(b_ptr + offs_n).to(tl.float32)[None, :]
            y_ptrs = y_ptr + offs_m.to(tl.int64)[:, None] * stride_ym + offs_n[None, :] * stride_yn
            tl.store(
                y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=m_ok[:, None], cache_modifier=".cs"
            )

    _CONFIGS = [
        triton.Config({"BLOCK_M": bm, "W_LEFT": w_left}, num_warps=warps, num_stages=stages)
        for w_left in (True, False)
        for bm in (16, 32, 64, 128, 256, 512)
        for warps in (4, 8)
        for stages in (3, 5)  # 3 and 4 compile alike (2 operand buffers); 5 gives 3
        if bm < 512 or warps == 8  # a (64, 512) fp32 accumulator needs 8 warps' registers
    ]

    def _prune(configs, named_args, **kwargs):
        """Keep the three largest BLOCK_M not above the M bucket; W_LEFT only for bs >= 64 (a
        shorter weight block does not fill wgmma's 64-row M slot: Triton falls back to
        mma.sync); tiles whose operand buffers fit shared memory."""
        args = {**named_args, **kwargs}
        bs, mk = args["BS"], args["M_KEY"]
        tiles = sorted({c.kwargs["BLOCK_M"] for c in configs if c.kwargs["BLOCK_M"] <= mk})[-3:]
        keep = [
            c
            for c in configs
            if c.kwargs["BLOCK_M"] in tiles
            and (bs >= 64 or not c.kwargs["W_LEFT"])
            and _smem_bytes(c.kwargs["BLOCK_M"], bs, c.num_stages) <= _SMEM_BUDGET
        ]
        return keep or [min(configs, key=lambda c: (c.kwargs["BLOCK_M"], c.num_stages))]

    _bsr_autotuned = triton.autotune(
        configs=_CONFIGS,
        key=["M_KEY", "K_KEY", "BLOCK_ROWS", "BS", "DENSITY_KEY", "X_ROW_MAJOR_KEY"],
        prune_configs_by={"early_config_prune": _prune},
    )(_bsr_kernel)


def bsr_linear_triton(
    x: torch.Tensor,
    values: torch.Tensor,
    crow: torch.Tensor,
    col: torch.Tensor,
    bias: torch.Tensor | None,
    out_features: int,
    config: dict | None = None,
) -> torch.Tensor:
    """y = x @ W.T (+ bias) for W (out_features, in) in BSR; x (M, in) any strides -> y (M,
    out_features) contiguous, in x's dtype.

    ``config`` ({"BLOCK_M", "W_LEFT", "num_warps", "num_stages"}) fixes the tiles instead of
    autotuning them (interpreter tests, benchmark sweeps); under TRITON_INTERPRET=1 it defaults
    to W_LEFT with BLOCK_M = min(64, M bucket).
    """
    bs = _check(x, values, crow, col, bias, out_features)
    if triton is None:
        raise RuntimeError("bsr_linear_triton needs Triton (a CUDA build of torch)")
    if x.device.type != "cuda" and not interpreting():
        raise ValueError(f"x must be on a CUDA device (or set TRITON_INTERPRET=1), got {x.device}")
    # the kernel steps through bias, crow and col by +1 (no-ops when already contiguous)
    crow, col = crow.contiguous(), col.contiguous()
    bias = bias.contiguous() if bias is not None else None
    m = x.shape[0]
    if config is None and interpreting():  # autotuning times kernels: needs a GPU
        config = {"BLOCK_M": min(64, m_key(m)), "W_LEFT": True}
    y = torch.empty(m, out_features, dtype=x.dtype, device=x.device)
    block_rows = out_features // bs
    if m == 0:
        return y
    args = (
        x, values, crow, col, bias if bias is not None else values, y,
        m, block_rows,
        x.stride(0), x.stride(1), y.stride(0), y.stride(1),
        m_key(m), x.shape[1], density_key(values.shape[0], block_rows), int(x.stride(1) == 1),
    )  # fmt: skip
    if config is None:
        grid = lambda cfg: (math.ceil(m / cfg["BLOCK_M"]) * block_rows,)  # noqa: E731
        _bsr_autotuned[grid](*args, BS=bs, HAS_BIAS=bias is not None)
    else:
        grid = (math.ceil(m / config["BLOCK_M"]) * block_rows,)
        _bsr_kernel[grid](*args, BS=bs, HAS_BIAS=bias is not None, **config)
    return y


def best_config() -> dict | None:
    """The config the autotuner used in the last autotuned call (benchmarks report it)."""
    if triton is None or getattr(_bsr_autotuned, "best_config", None) is None:
        return None
    c = _bsr_autotuned.best_config
    return {**c.kwargs, "num_warps": c.num_warps, "num_stages": c.num_stages}


# The kernel as a torch op: torch.compile keeps it opaque (Dynamo never traces Triton's
# launcher or autotuner) and CUDA graphs record its launch.
@torch.library.custom_op("sparsetorch::bsr_linear", mutates_args=())
def bsr_linear(
    x: torch.Tensor,
    values: torch.Tensor,
    crow: torch.Tensor,
    col: torch.Tensor,
    bias: torch.Tensor | None,
    out_features: int,
) -> torch.Tensor:
    """``bsr_linear_triton`` autotuned, as ``torch.ops.sparsetorch.bsr_linear``."""
    return bsr_linear_triton(x, values, crow, col, bias, out_features)


@bsr_linear.register_fake
def _bsr_linear_fake(x, values, crow, col, bias, out_features):
    torch._check((crow.shape[0] - 1) * values.shape[1] == out_features)
    return x.new_empty(x.shape[0], out_features)  # (M, out)


# --- backward: block-sparse training -----------------------------------------------------
# y = x W^T with W in BSR. dx = dy W is again a BSR product, with W^T in BSR (blocks transposed,
# ordered by block column): the same kernel. dW is needed at the stored blocks only (the
# pattern is fixed): block b at (r, c) gets dy[:, r]^T x[:, c], a batch of (bs x M) @ (M x bs)
# products over the stored blocks (an SDDMM). On CUDA one Triton kernel computes them in place
# (``bsr_weight_grad_triton``); ``bsr_weight_grad`` is the torch form (chunks of gathered
# copies), used elsewhere and as the tests' reference. The bias gradient is dy summed over rows.


def transpose_pattern(
    crow: torch.Tensor, col: torch.Tensor, block_cols: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The block pattern of W^T, given W's (``crow``, ``col``) with ``block_cols`` block
    columns: (order (nnzb,): W's block index of each W^T block, crow_t, col_t), W^T's blocks
    ordered by (block column, block row); index dtypes kept; no host synchronisation."""
    rows = expand_rows(crow, col.numel())
    order = torch.argsort(col.long() * (crow.numel() - 1) + rows)
    col_t = rows[order].to(col.dtype)
    crow_t = compress_rows(col[order], block_cols, crow.dtype)
    return order, crow_t, col_t


# The pattern of a trained block-sparse weight is fixed between pattern updates, and its
# transposition is a dozen small launches (an argsort among them): each backward would
# otherwise spend more time launching them than the dx product takes at 5% density. Keyed by
# the col tensor (held weakly) and checked against crow's identity and both version counters,
# so an in-place edit of the pattern or a new pattern recomputes it.
_TRANSPOSED = WeakIdKeyDictionary()


def _memoisable(*tensors: torch.Tensor) -> bool:
    """Real tensors in eager code: not traced (fake or functional tensors under
    torch.compile) and not inside a CUDA graph capture (whose allocations belong to it)."""
    if torch.compiler.is_compiling() or any(is_fake(t) for t in tensors):
        return False
    return not (torch.cuda.is_available() and torch.cuda.is_current_stream_capturing())


def transposed_pattern(
    crow: torch.Tensor, col: torch.Tensor, block_cols: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`transpose_pattern`, remembered for the pattern (crow, col) as long as col lives
    and neither tensor changes in place."""
    if not _memoisable(crow, col):
        return transpose_pattern(crow, col, block_cols)
    stamp = (crow._version, col._version, block_cols)
    hit = _TRANSPOSED.get(col)
    if hit is not None and hit[0] is crow and hit[1] == stamp:
        return hit[2]
    found = transpose_pattern(crow, col, block_cols)
    _TRANSPOSED[col] = (crow, stamp, found)
    return found


def transpose_bsr(
    values: torch.Tensor, crow: torch.Tensor, col: torch.Tensor, block_cols: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(values, crow, col) of W^T, given W's with ``block_cols`` block columns: blocks
    transposed and ordered by (block column, block row); index dtypes kept. The pattern's
    part comes from :func:`transposed_pattern`: per call, one gather of the values."""
    order, crow_t, col_t = transposed_pattern(crow, col, block_cols)
    return values[order].transpose(1, 2).contiguous(), crow_t, col_t


def bsr_weight_grad(
    x: torch.Tensor, dy: torch.Tensor, crow: torch.Tensor, col: torch.Tensor, bs: int,
    chunk: int = 128,
) -> torch.Tensor:  # fmt: skip
    """dL/dW at the stored blocks (nnzb, bs, bs) for y = x W^T: block (r, c) is
    dy[:, r·bs:(r+1)·bs]^T @ x[:, c·bs:(c+1)·bs], accumulated in float32."""
    m = x.shape[0]
    nnzb = col.numel()
    rows = expand_rows(crow, nnzb)
    out = torch.empty(nnzb, bs, bs, dtype=x.dtype, device=x.device)
    xb = x.reshape(m, -1, bs)  # (M, in/bs, bs)
    dyb = dy.reshape(m, -1, bs)  # (M, out/bs, bs)
    for s in range(0, nnzb, chunk):
        r, c = rows[s : s + chunk], col[s : s + chunk].long()
        a = dyb[:, r].permute(1, 2, 0)  # (k, bs, M)
        b = xb[:, c].permute(1, 0, 2)  # (k, M, bs)
        out[s : s + chunk] = torch.bmm(a.float(), b.float()).to(x.dtype)
    return out


if triton is not None:

    @triton.jit(do_not_specialize=["M_KEY", "NNZB_KEY"])
    def _dw_kernel(
        x_ptr, dy_ptr, rows_ptr, col_ptr, out_ptr,
        M, M_PER_SPLIT, NNZB,
        stride_xm, stride_xk, stride_dm, stride_dn,
        M_KEY, NNZB_KEY,  # autotune keys only (buckets)
        BS: tl.constexpr, BLOCK_K: tl.constexpr,
    ):  # fmt: skip
        b = tl.program_id(0)  # stored block: consecutive programs share a block row (dy in L2)
        split = tl.program_id(1)  # which run of M_PER_SPLIT rows of x / dy
        r = tl.load(rows_ptr + b).to(tl.int64)
        c = tl.load(col_ptr + b).to(tl.int64)
        offs = tl.arange(0, BS)  # (BS,) within a block
        offs_k = tl.arange(0, BLOCK_K)  # (BK,) rows of x / dy
        dy_cols = dy_ptr + (r * BS + offs) * stride_dn  # (BS,) output features of block row r
        x_cols = x_ptr + (c * BS + offs) * stride_xk  # (BS,) input features of block column c
        acc = tl.zeros((BS, BS), dtype=tl.float32)  # (out block, in block)
        start = split * M_PER_SPLIT
        stop = tl.minimum(start + M_PER_SPLIT, M)
        for k0 in range(start, stop, BLOCK_K):
            rows = k0 + offs_k
            ok = rows < stop
            rows = rows.to(tl.int64)
            a = tl.load(
                dy_cols[:, None] + rows[None, :] * stride_dm, mask=ok[None, :], other=0.0
            )  # (BS, BK) = dy^T
            xb = tl.load(
                x_cols[None, :] + rows[:, None] * stride_xm, mask=ok[:, None], other=0.0
            )  # (BK, BS)
            acc = tl.dot(a, xb, acc)
        out = out_ptr + (split.to(tl.int64) * NNZB + b) * (BS * BS)
        tl.store(out + offs[:, None] * BS + offs[None, :], acc)

    _DW_CONFIGS = [
        triton.Config({"BLOCK_K": bk}, num_warps=warps, num_stages=stages)
        for bk in (32, 64, 128)
        for warps in (4, 8)
        for stages in (3, 4)
    ]

    def _dw_prune(configs, named_args, **kwargs):
        """Tiles whose operand buffers fit shared memory (bs 128 with BLOCK_K 128)."""
        bs = {**named_args, **kwargs}["BS"]
        keep = [
            c
            for c in configs
            if (c.num_stages - 1) * 2 * bs * c.kwargs["BLOCK_K"] * 2 <= _SMEM_BUDGET
        ]
        return keep or [min(configs, key=lambda c: (c.kwargs["BLOCK_K"], c.num_stages))]

    _dw_autotuned = triton.autotune(
        configs=_DW_CONFIGS,
        key=["M_KEY", "NNZB_KEY", "BS"],
        prune_configs_by={"early_config_prune": _dw_prune},
    )(_dw_kernel)

_SPLIT_ROWS = 128  # runs of rows per split are a multiple of every BLOCK_K


def weight_grad_splits(m: int, nnzb: int, programs: int) -> int:
    """Runs of rows the weight gradient splits M into: enough programs (``programs``, about
    4 per SM) when there are few stored blocks, never a run shorter than 4 x 128 rows."""
    if nnzb == 0 or m == 0:
        return 1
    most = max(1, m // (4 * _SPLIT_ROWS))
    return max(1, min(most, -(-programs // nnzb)))


def bsr_weight_grad_triton(
    x: torch.Tensor, dy: torch.Tensor, crow: torch.Tensor, col: torch.Tensor, bs: int,
    config: dict | None = None, splits: int | None = None,
) -> torch.Tensor:  # fmt: skip
    """``bsr_weight_grad`` as one Triton kernel (a sampled dense-dense product): one program
    per stored block (and run of rows), reading dy's and x's columns in place, no gathered
    copies; float32 accumulation; x (M, in), dy (M, out) float16/bfloat16 -> (nnzb, bs, bs).
    ``config`` ({"BLOCK_K", "num_warps", "num_stages"}) fixes the tiles (interpreter tests);
    ``splits`` the runs of rows (default: ``weight_grad_splits``), summed in float32."""
    if triton is None:
        raise RuntimeError("bsr_weight_grad_triton needs Triton (a CUDA build of torch)")
    if x.dtype not in (torch.float16, torch.bfloat16) or dy.dtype != x.dtype:
        raise TypeError(f"x and dy must be one of float16/bfloat16, got {x.dtype}/{dy.dtype}")
    if x.dim() != 2 or dy.dim() != 2 or x.shape[0] != dy.shape[0]:
        raise ValueError(
            f"x (M, in) and dy (M, out) must share M, got {tuple(x.shape)} and {tuple(dy.shape)}"
        )
    m = x.shape[0]
    nnzb = col.numel()
    if nnzb == 0:
        return torch.empty(0, bs, bs, dtype=x.dtype, device=x.device)
    rows = expand_rows(crow, nnzb)
    if config is None and interpreting():
        config = {"BLOCK_K": 32}
    sms = (
        torch.cuda.get_device_properties(x.device).multi_processor_count
        if x.device.type == "cuda"
        else 1
    )
    if splits is None:
        splits = weight_grad_splits(m, nnzb, 4 * sms)
    per_split = -(-m // splits)
    per_split = -(-per_split // _SPLIT_ROWS) * _SPLIT_ROWS
    splits = -(-m // per_split) if m else 1
    out = torch.empty(splits, nnzb, bs, bs, dtype=torch.float32, device=x.device)
    args = (
        x, dy, rows, col.contiguous(), out, m, per_split, nnzb,
        x.stride(0), x.stride(1), dy.stride(0), dy.stride(1),
        m_key(m), density_key(nnzb, 1),
    )  # fmt: skip
    grid = (nnzb, splits)
    if config is None:
        _dw_autotuned[grid](*args, BS=bs)
    else:
        _dw_kernel[grid](*args, BS=bs, **config)
    total = out[0] if splits == 1 else out.sum(0)  # (nnzb, bs, bs) float32
    return total.to(x.dtype)


# As a torch op so that a compiled backward keeps the kernel opaque (AOTAutograd traces the
# backward with fake tensors, which a Triton launch cannot take).
@torch.library.custom_op("sparsetorch::bsr_weight_grad", mutates_args=())
def bsr_weight_grad_op(
    x: torch.Tensor, dy: torch.Tensor, crow: torch.Tensor, col: torch.Tensor, bs: int
) -> torch.Tensor:
    """dL/dW at the stored blocks (nnzb, bs, bs): ``bsr_weight_grad_triton`` on CUDA (and
    under Triton's interpreter), ``bsr_weight_grad`` elsewhere."""
    kernel = x.device.type == "cuda" or interpreting()
    return (bsr_weight_grad_triton if kernel else bsr_weight_grad)(x, dy, crow, col, bs)


@bsr_weight_grad_op.register_fake
def _bsr_weight_grad_fake(x, dy, crow, col, bs):
    return x.new_empty(col.shape[0], bs, bs)


def _bsr_setup_context(ctx, inputs, output):
    x, values, crow, col = inputs[:4]
    ctx.save_for_backward(x, values, crow, col)
    ctx.in_features = x.shape[1]


def _bsr_backward(ctx, dy):
    x, values, crow, col = ctx.saved_tensors
    bs = values.shape[1]
    dy = dy.contiguous()
    dx = dvalues = dbias = None
    if ctx.needs_input_grad[0]:
        vt, crow_t, col_t = transpose_bsr(values, crow, col, ctx.in_features // bs)
        dx = torch.ops.sparsetorch.bsr_linear(dy, vt, crow_t, col_t, None, ctx.in_features)
    if ctx.needs_input_grad[1]:
        dvalues = torch.ops.sparsetorch.bsr_weight_grad(x, dy, crow, col, bs)
    if ctx.needs_input_grad[4]:
        dbias = dy.sum(0)
    return dx, dvalues, None, None, dbias, None


bsr_linear.register_autograd(_bsr_backward, setup_context=_bsr_setup_context)
