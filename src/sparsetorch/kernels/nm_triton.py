"""Triton 2:4 kernels for decode: y = x @ W.T with W 2:4-compressed; small M takes a gather
GEMV, larger M (up to 64 rows per tile) a skinny GEMM that expands tiles for tl.dot; both
autotuned per shape.

Small M is memory bound: the kernel streams the compressed weight (values + 2-bit positions,
56% of dense bytes), expands each (BLOCK_N, BLOCK_K) tile in registers and multiplies it with
tl.dot against the (BLOCK_K, BLOCK_M) slice of x. The compressed weight is
``formats.NM.from_dense(w, 2, 4)``'s ``values`` and ``meta`` (see nm_reference.py, its twin).
"""

from __future__ import annotations

import torch

from sparsetorch.kernels.interpret import interpreting

try:  # Triton is optional: present with CUDA builds of torch
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - CPU machines
    triton = None


# The gather GEMV's cost grows with M (one gather and reduction per row); above this M the
# skinny GEMM (expanded tiles, tensor cores) is faster. Measured by benchmarks/nm_decode.py.
GEMV_MAX_M = 4


def available() -> bool:
    return triton is not None


if triton is not None:

    @triton.jit
    def _nm_skinny_kernel(
        x_ptr, v_ptr, m_ptr, b_ptr, y_ptr,
        M, N, K,
        stride_xm, stride_vn, stride_mn, stride_ym,
        HAS_BIAS: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    ):  # fmt: skip
        pid_n = tl.program_id(0)
        pid_m = tl.program_id(1)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # (BN,)
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # (BM,)
        G: tl.constexpr = BLOCK_K // 4  # groups of 4 in one K tile
        acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
        four = tl.arange(0, 4)
        for k0 in range(0, K, BLOCK_K):
            # compressed values of the tile: (BN, BK/2)
            offs_h = k0 // 2 + tl.arange(0, BLOCK_K // 2)
            vals = tl.load(
                v_ptr + offs_n[:, None] * stride_vn + offs_h[None, :],
                mask=(offs_n[:, None] < N) & (offs_h[None, :] < K // 2),
                other=0.0,
            )
            # positions: one byte per pair of groups -> 4 two-bit fields per byte
            offs_b = k0 // 8 + tl.arange(0, BLOCK_K // 8)
            packed = tl.load(
                m_ptr + offs_n[:, None] * stride_mn + offs_b[None, :],
                mask=(offs_n[:, None] < N) & (offs_b[None, :] < K // 8),
                other=0,
            ).to(tl.int32)  # (BN, BK/8)
            pos = (packed[:, :, None] >> (2 * four)[None, None, :]) & 3  # (BN, BK/8, 4)
            # a byte's four fields are (group 2b, slot 0), (2b, 1), (2b + 1, 0), (2b + 1, 1)
            p0, p1 = tl.split(tl.reshape(pos, (BLOCK_N, G, 2)))  # (BN, G) each
            v0, v1 = tl.split(tl.reshape(vals, (BLOCK_N, G, 2)))
            # expand to the dense tile: two selects per weight, w[n, g, j] = v0 if p0 == j,
            # v1 if p1 == j, else 0 (the two positions of a group differ)
            j = four[None, None, :]
            w = tl.where(
                p0[:, :, None] == j,
                v0[:, :, None],
                tl.where(p1[:, :, None] == j, v1[:, :, None], tl.zeros_like(v1[:, :, None])),
            )  # (BN, G, 4)
            w = tl.reshape(w, (BLOCK_N, BLOCK_K)).to(vals.dtype)
            offs_k = k0 + tl.arange(0, BLOCK_K)
            xt = tl.load(
                x_ptr + offs_m[None, :] * stride_xm + offs_k[:, None],
                mask=(offs_m[None, :] < M) & (offs_k[:, None] < K),
                other=0.0,
            )  # (BK, BM)
            acc += tl.dot(w, xt)
        if HAS_BIAS:
            bias = tl.load(b_ptr + offs_n, mask=offs_n < N, other=0.0)
            acc += bias[:, None].to(tl.float32)
        y = acc.to(y_ptr.dtype.element_ty)
        tl.store(
            y_ptr + offs_m[None, :] * stride_ym + offs_n[:, None],
            y,
            mask=(offs_m[None, :] < M) & (offs_n[:, None] < N),
        )

    _SKINNY_CONFIGS = [
        triton.Config({"BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w, num_stages=st)
        for bn in (16, 32, 64)
        for bk in (64, 128, 256)
        for w in (4, 8)
        for st in (3, 4)
        if bn * bk <= 8192
    ]
    _nm_skinny_autotuned = triton.autotune(configs=_SKINNY_CONFIGS, key=["N", "K", "BLOCK_M"])(
        _nm_skinny_kernel
    )

    _GEMV_CONFIGS = [
        triton.Config({"BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w)
        for bn in (4, 8, 16, 32)
        for bk in (512, 1024, 2048)
        for w in (4, 8)
        if bn * bk <= 16384
    ]

    @triton.jit
    def _nm_gemv_kernel(
        x_ptr, v_ptr, m_ptr, b_ptr, y_ptr,
        M, N, K,
        stride_xm, stride_vn, stride_mn, stride_ym,
        HAS_BIAS: tl.constexpr, MB: tl.constexpr,
        BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    ):  # fmt: skip
        # decode path (small M): no expansion, no tensor cores; each kept value is multiplied by
        # the x entry it belongs to (gathered from L1/L2: x is tiny), so only the compressed
        # weight streams from HBM.
        pid_n = tl.program_id(0)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # (BN,)
        H: tl.constexpr = BLOCK_K // 2  # kept values per row in one K tile
        rows = tl.arange(0, MB)
        acc = tl.zeros((BLOCK_N, MB), dtype=tl.float32)
        four = tl.arange(0, 4)
        h = tl.arange(0, H)
        for k0 in range(0, K, BLOCK_K):
            nmask = offs_n[:, None] < N
            vals = tl.load(
                v_ptr + offs_n[:, None] * stride_vn + (k0 // 2 + h)[None, :],
                mask=nmask,
                other=0.0,
                eviction_policy="evict_first",  # streamed once: keep L2 for x
            ).to(tl.float32)  # (BN, H)
            packed = tl.load(
                m_ptr + offs_n[:, None] * stride_mn + (k0 // 8 + tl.arange(0, H // 4))[None, :],
                mask=nmask,
                other=0,
            ).to(tl.int32)  # (BN, H/4)
            pos = tl.reshape((packed[:, :, None] >> (2 * four)[None, None, :]) & 3, (BLOCK_N, H))
            col = k0 + (h // 2)[None, :] * 4 + pos  # (BN, H) column of each kept value
            for r in tl.static_range(MB):
                xg = tl.load(
                    x_ptr + r * stride_xm + col, mask=nmask, other=0.0
                )  # x padded to MB rows
                part = tl.sum(vals * xg.to(tl.float32), axis=1)  # (BN,)
                acc += tl.where(rows[None, :] == r, part[:, None], 0.0)
        if HAS_BIAS:
            bias = tl.load(b_ptr + offs_n, mask=offs_n < N, other=0.0)
            acc += bias[:, None].to(tl.float32)
        tl.store(
            y_ptr + rows[None, :] * stride_ym + offs_n[:, None],
            acc.to(y_ptr.dtype.element_ty),
            mask=(rows[None, :] < M) & (offs_n[:, None] < N),
        )

    def _divides_k(configs, named_args, **kwargs):
        k = named_args["K"]
        return [c for c in configs if k % c.kwargs["BLOCK_K"] == 0]

    _nm_gemv_autotuned = triton.autotune(
        configs=_GEMV_CONFIGS,
        key=["N", "K", "MB"],
        prune_configs_by={"early_config_prune": _divides_k},
    )(_nm_gemv_kernel)


def nm_linear_triton(
    x: torch.Tensor,
    values: torch.Tensor,
    meta: torch.Tensor,
    bias: torch.Tensor | None = None,
    gemv_config: dict | None = None,
    skinny_config: dict | None = None,
    gemv_max_m: int | None = None,
) -> torch.Tensor:
    """x (M, K) @ W.T (+ b) with W (N, K) 2:4-compressed; returns (M, N) in x's dtype.

    M <= ``gemv_max_m`` (default ``GEMV_MAX_M``) with K % 512 == 0 runs the gather GEMV,
    larger M the skinny GEMM. ``gemv_config`` / ``skinny_config`` ({"BLOCK_N", "BLOCK_K",
    "num_warps"}) fix a kernel's tiles instead of autotuning them (benchmark sweeps); under
    TRITON_INTERPRET=1 a small fixed config is the default."""
    if triton is None:
        raise RuntimeError("nm_linear_triton needs Triton (a CUDA build of torch)")
    m, k = x.shape
    n = values.shape[0]
    if values.shape != (n, k // 2) or meta.shape != (n, k // 8):
        raise ValueError(
            f"compressed weight shapes {tuple(values.shape)}, {tuple(meta.shape)} "
            f"do not match x of shape {tuple(x.shape)}"
        )
    if interpreting():  # autotuning times every config: needs a GPU; one small config each
        gemv_config = gemv_config or {"BLOCK_N": 4, "BLOCK_K": 512, "num_warps": 4}
        skinny_config = skinny_config or {"BLOCK_N": 16, "BLOCK_K": 64, "num_warps": 4}
    x = x.contiguous()
    bias = bias.contiguous() if bias is not None else None  # read by +1 steps
    y = torch.empty(m, n, dtype=x.dtype, device=x.device)
    if m == 0:  # an empty batch: nothing to launch (the GEMV's tl.arange(0, MB) needs MB > 0)
        return y
    if m <= (GEMV_MAX_M if gemv_max_m is None else gemv_max_m) and k % 512 == 0:
        mb = triton.next_power_of_2(m)
        xp = torch.nn.functional.pad(x, (0, 0, 0, mb - m)) if mb > m else x  # (MB, K)
        kernel, extra = _nm_gemv_autotuned, {}
        if gemv_config is not None:
            if k % gemv_config["BLOCK_K"]:
                raise ValueError(f"BLOCK_K {gemv_config['BLOCK_K']} must divide K={k}")
            kernel, extra = _nm_gemv_kernel, dict(gemv_config)
        grid = lambda cfg: (triton.cdiv(n, cfg["BLOCK_N"]),)  # noqa: E731
        kernel[grid](
            xp, values, meta, bias if bias is not None else values, y,
            m, n, k,
            xp.stride(0), values.stride(0), meta.stride(0), y.stride(0),
            HAS_BIAS=bias is not None, MB=mb, **extra,
        )  # fmt: skip
        return y
    block_m = max(16, triton.next_power_of_2(m)) if m <= 64 else 64
    kernel, extra = _nm_skinny_autotuned, {}
    if skinny_config is not None:
        kernel, extra = _nm_skinny_kernel, dict(skinny_config)
    grid = lambda cfg: (triton.cdiv(n, cfg["BLOCK_N"]), triton.cdiv(m, block_m))  # noqa: E731
    kernel[grid](
        x, values, meta, bias if bias is not None else values, y,
        m, n, k,
        x.stride(0), values.stride(0), meta.stride(0), y.stride(0),
        HAS_BIAS=bias is not None, BLOCK_M=block_m, **extra,
    )  # fmt: skip
    return y


# The kernel as a torch op: torch.compile keeps it opaque (Dynamo never traces Triton's
# launcher or autotuner) and CUDA graphs (mode="reduce-overhead") record its launch.
@torch.library.custom_op("sparsetorch::nm_linear_2to4", mutates_args=())
def nm_linear_2to4(
    x: torch.Tensor, values: torch.Tensor, meta: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """``nm_linear_triton`` with its default tiles, as ``torch.ops.sparsetorch.nm_linear_2to4``."""
    return nm_linear_triton(x, values, meta, bias)


@nm_linear_2to4.register_fake
def _nm_linear_2to4_fake(x, values, meta, bias=None):
    n = values.shape[0]
    torch._check(values.shape[1] * 2 == x.shape[1] and meta.shape == (n, x.shape[1] // 8))
    return x.new_empty(x.shape[0], n)  # (M, N)
