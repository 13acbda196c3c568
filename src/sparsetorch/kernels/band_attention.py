"""Band (sliding-window) attention in Triton, forward and backward: softmax attention where
query i sees key j iff ``lo <= i - j <= hi`` (``local(w)`` is lo = -w, hi = w; a causal window
``band(0, w)``), exact, in the FlashAttention-2 recipe (Dao 2023): per tile of queries an
online softmax over the key tiles the band touches, the log-sum-exp kept for the backward,
which recomputes the probabilities (one kernel for dK/dV per key tile, one for dQ per query
tile: no atomics).

Unlike a block-mask kernel (FlexAttention), the key range of a query tile is computed, not
read from block lists, and only the tiles on the band's two edges evaluate the mask: a tile
wholly inside the band runs unmasked (the forward either in its own loop or, ``ONE_LOOP``, in
one software-pipelined loop whose edge tiles take the mask by a branch; autotuned). GQA: q
has H heads, k and v H / group heads; query head h reads key head h // group, and the dK/dV
program of a key head sums over its group. A query row with no key in the band gives zeros (and zero gradients).

Non-finite keys and values (``contain``) are contained in the kernels themselves. The forward
computes each tile as usual and then marks the tile's own positions whose k or v row holds a
NaN or ±inf (one read of k and v in all); a second launch recomputes only the tiles whose keys
hold a marked position, zeroing those value rows and setting the rows the band lets attend one
to NaN with lse +inf (so the backward gives them probability 0 and no gradient). This replaces
cleaned copies of k and v and a NaN fill of the output afterwards.

``band_attention(q, k, v, lo, hi, scale)`` is a torch op (``sparsetorch::band_attention``)
with its backward registered, so ``torch.compile(fullgraph=True)`` keeps it opaque. The twin
is masked dense attention (``tests/kernels/test_band_attention.py``, against float64).
"""

from __future__ import annotations

import math

import torch

from sparsetorch.kernels.interpret import interpreting

try:  # Triton is optional: present with CUDA builds of torch
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - CPU machines without Triton
    triton = None

HEAD_DIMS = (16, 32, 64, 128)
DTYPES = (torch.float16, torch.bfloat16)
LOG2E = 1.4426950408889634


def available() -> bool:
    return triton is not None


def unsupported(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None = None) -> str | None:
    """None if the kernel takes these inputs (B, H, n, D); else why not."""
    if triton is None:
        return "Triton is not installed"
    if q.device.type != "cuda" and not interpreting():
        return "needs a CUDA device (or TRITON_INTERPRET=1)"
    if q.dtype not in DTYPES:
        return f"needs float16/bfloat16, got {q.dtype}"
    if q.shape[-1] not in HEAD_DIMS or k.shape[-1] != q.shape[-1]:
        return f"head dim must be one of {HEAD_DIMS} for q, k and v, got {q.shape[-1]}"
    if v is not None and v.shape[-1] != k.shape[-1]:
        return f"needs v's head dim equal to q's and k's ({k.shape[-1]}), got {v.shape[-1]}"
    if q.shape[1] % k.shape[1]:
        return f"q heads ({q.shape[1]}) must be a multiple of k/v heads ({k.shape[1]})"
    return None


if triton is not None:
    from sparsetorch.kernels.finite_triton import _finite  # one test of finiteness for both

    @triton.jit
    def _ranges(start, N, LO, HI, TILE: tl.constexpr, OTHER: tl.constexpr, SIDE: tl.constexpr):
        """For the tile [start, start + TILE) of one side, the other side's tiles (of OTHER)
        the band touches: (first, first full, end of full, end). SIDE 0: a query tile, keys
        j with i - HI <= j <= i - LO; SIDE 1: a key tile, queries i with j + LO <= i <= j + HI.
        A full tile has every pair in the band and lies wholly inside [0, N)."""
        if SIDE == 0:
            a = start - HI  # first key of the first row
            b = start + TILE - 1 - LO + 1  # one past the last key of the last row
            fa = start + TILE - 1 - HI  # keys from here ...
            fb = start - LO + 1  # ... to here are in the band for every row
        else:
            a = start + LO
            b = start + TILE - 1 + HI + 1
            fa = start + TILE - 1 + LO
            fb = start + HI + 1
        a = tl.maximum(a, 0)
        b = tl.minimum(b, N)
        first = (a // OTHER) * OTHER
        end = tl.maximum(b, first)
        # full tiles: [full_lo, full_hi), clamped so that first <= full_lo <= full_hi <= end
        full_lo = ((tl.maximum(fa, 0) + OTHER - 1) // OTHER) * OTHER
        full_lo = tl.minimum(tl.maximum(full_lo, first), end)
        full_hi = (tl.minimum(fb, N) // OTHER) * OTHER
        full_hi = tl.minimum(tl.maximum(full_hi, full_lo), end)
        return first, full_lo, full_hi, end

    @triton.jit
    def _in_band(offs_m, offs_n, N, LO, HI):
        """(BM, BN): query offs_m may see key offs_n (LO <= i - j <= HI, key inside [0, N))."""
        d = offs_m[:, None] - offs_n[None, :]
        return (d >= LO) & (d <= HI) & (offs_n[None, :] < N)

    @triton.jit
    def _bad_keys(bad_base, offs_n, N):
        """(BN,) int1: the key positions marked bad (their k or v row holds a non-finite
        entry), from a (n,) bool row of marks."""
        return tl.load(bad_base + offs_n, mask=offs_n < N, other=0) != 0

    @triton.jit
    def _mark_rows(k_base, v_base, bad_base, offs, stride_kn, stride_vn, N, HEAD_DIM: tl.constexpr):
        """Marks of positions ``offs`` (BM,): whether the k or v row holds a NaN or ±inf."""
        offs_d = tl.arange(0, HEAD_DIM)
        rows = offs < N
        kr = tl.load(k_base + offs[:, None] * stride_kn + offs_d[None, :], mask=rows[:, None])
        vr = tl.load(v_base + offs[:, None] * stride_vn + offs_d[None, :], mask=rows[:, None])
        finite = _finite(kr) & _finite(vr)
        tl.store(bad_base + offs, tl.min(finite.to(tl.int32), 1) == 0, mask=rows)

    @triton.jit
    def _contain(v, seen, bad_base, offs_m, offs_n, N, LO, HI):
        """The forward's containment of one key tile: where a position is bad, its v row
        zeroed (a probability of 0 times a NaN is NaN, which the product would spread to
        every row) and ``seen`` (BM,) set for the rows the band lets attend it. Its k row
        needs nothing: the mask replaces the scores of rows outside the band, and a tile
        without the mask lies wholly inside it, so each row there sees the position.
        Tiles without a bad position skip both by one branch (on a block-wide reduction:
        the fix-up pass only)."""
        bad = _bad_keys(bad_base, offs_n, N)  # (BN,)
        if tl.max(bad.to(tl.int32), 0) != 0:
            v = tl.where(bad[:, None], tl.zeros_like(v), v)
            hit = _in_band(offs_m, offs_n, N, LO, HI) & bad[None, :]  # (BM, BN)
            seen = seen | (tl.max(hit.to(tl.int32), 1) != 0)
        return v, seen

    @triton.jit
    def _exp2_poly(x):
        """2**x for x <= 0 on the FMA units: the integer part into the exponent bits, the
        fraction through a degree-5 polynomial (relative error about 2e-7 in float32, the
        special-function unit's own is about 1e-7); 0 below 2**-126."""
        xc = tl.maximum(x, -126.0)
        j = tl.floor(xc)
        f = xc - j  # [0, 1)
        p = 1.8775767e-3
        p = p * f + 8.9893397e-3
        p = p * f + 5.5826318e-2
        p = p * f + 2.4015361e-1
        p = p * f + 6.9315308e-1
        p = p * f + 1.0
        bits = p.to(tl.int32, bitcast=True) + (j.to(tl.int32) << 23)
        return tl.where(x < -126.0, 0.0, bits.to(tl.float32, bitcast=True))

    @triton.jit
    def _softmax_step(qk, m_i, l_i, qk_scale, POLY: tl.constexpr = False):
        """One key tile of the online softmax: raw scores qk (BM, BN) (q kᵀ; -inf outside the
        band), times qk_scale (> 0) in log2 units, against the running max m_i and sum l_i
        (log2 units) -> (probabilities p, rescale alpha of the old acc and l_i, new l_i, new
        max). The max is taken of the raw scores and scaled per row, so that each score's
        scaling and the max's subtraction are one fused multiply-add. POLY: every second
        column's exponential on the FMA units (``_exp2_poly``), the others on the
        special-function units, which then do half the work (FlashAttention-4's split,
        Zadouri et al. 2025)."""
        m_new = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows with no key yet
        x = qk * qk_scale - m_safe[:, None]
        if POLY:  # the column pairs sit in one thread's registers: no data moves
            a, b = tl.split(tl.reshape(x, (x.shape[0], x.shape[1] // 2, 2)))
            p = tl.reshape(tl.join(tl.math.exp2(a), _exp2_poly(b)), (x.shape[0], x.shape[1]))
        else:
            p = tl.math.exp2(x)
        alpha = tl.math.exp2(m_i - m_safe)
        return p, alpha, l_i * alpha + tl.sum(p, 1), m_new

    @triton.jit
    def _fwd_tiles(
        acc, l_i, m_i, seen, q, k_base, v_base, bad_base, offs_m, start, stop,
        stride_kn, stride_vn, N, LO, HI, qk_scale,
        MASK: tl.constexpr, BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr,
        POLY: tl.constexpr, CONTAIN: tl.constexpr,
    ):  # fmt: skip
        offs_d = tl.arange(0, HEAD_DIM)
        for s in range(start, stop, BLOCK_N):
            offs_n = s + tl.arange(0, BLOCK_N)
            if MASK:
                kt = tl.load(
                    k_base + offs_n[None, :] * stride_kn + offs_d[:, None],
                    mask=offs_n[None, :] < N,
                    other=0.0,
                )  # (D, BN)
            else:
                kt = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None])
            qk = tl.dot(q, kt)  # (BM, BN), unscaled
            if MASK:
                qk = tl.where(_in_band(offs_m, offs_n, N, LO, HI), qk, float("-inf"))
            p, alpha, l_i, m_new = _softmax_step(qk, m_i, l_i, qk_scale, POLY)
            if MASK:
                v = tl.load(
                    v_base + offs_n[:, None] * stride_vn + offs_d[None, :],
                    mask=offs_n[:, None] < N,
                    other=0.0,
                )  # (BN, D)
            else:
                v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :])
            if CONTAIN:
                v, seen = _contain(v, seen, bad_base, offs_m, offs_n, N, LO, HI)
            acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None])
            m_i = m_new
        return acc, l_i, m_i, seen

    @triton.jit
    def _fwd_tiles_one_loop(
        acc, l_i, m_i, q, k_base, v_base, offs_m, start, stop, full_lo, full_hi,
        stride_kn, stride_vn, N, LO, HI, qk_scale,
        BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, POLY: tl.constexpr,
    ):  # fmt: skip
        """``_fwd_tiles`` over the whole run in one loop (one software pipeline instead of
        three short ones): the tiles outside [full_lo, full_hi) evaluate the mask."""
        offs_d = tl.arange(0, HEAD_DIM)
        for s in range(start, stop, BLOCK_N):
            offs_n = s + tl.arange(0, BLOCK_N)
            kt = tl.load(
                k_base + offs_n[None, :] * stride_kn + offs_d[:, None],
                mask=offs_n[None, :] < N,
                other=0.0,
            )  # (D, BN)
            qk = tl.dot(q, kt)  # (BM, BN), unscaled
            if (s < full_lo) | (s >= full_hi):
                qk = tl.where(_in_band(offs_m, offs_n, N, LO, HI), qk, float("-inf"))
            p, alpha, l_i, m_new = _softmax_step(qk, m_i, l_i, qk_scale, POLY)
            v = tl.load(
                v_base + offs_n[:, None] * stride_vn + offs_d[None, :],
                mask=offs_n[:, None] < N,
                other=0.0,
            )  # (BN, D)
            acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None])
            m_i = m_new
        return acc, l_i, m_i

    @triton.jit
    def _fwd_tiles_tma(
        acc, l_i, m_i, q, k_base, v_base, offs_m, start, stop, full_lo, full_hi,
        stride_kn, stride_vn, N, LO, HI, qk_scale,
        BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, POLY: tl.constexpr,
    ):  # fmt: skip
        """``_fwd_tiles_one_loop`` with k and v read by the tensor-memory accelerator
        (descriptors made on the device; rows past N read as zeros)."""
        kd = tl.make_tensor_descriptor(
            k_base, shape=[N, HEAD_DIM], strides=[stride_kn, 1], block_shape=[BLOCK_N, HEAD_DIM]
        )
        vd = tl.make_tensor_descriptor(
            v_base, shape=[N, HEAD_DIM], strides=[stride_vn, 1], block_shape=[BLOCK_N, HEAD_DIM]
        )
        for s in range(start, stop, BLOCK_N):
            offs_n = s + tl.arange(0, BLOCK_N)
            kb = kd.load([s, 0])  # (BN, D)
            qk = tl.dot(q, kb.T)  # (BM, BN), unscaled
            if (s < full_lo) | (s >= full_hi):
                qk = tl.where(_in_band(offs_m, offs_n, N, LO, HI), qk, float("-inf"))
            p, alpha, l_i, m_new = _softmax_step(qk, m_i, l_i, qk_scale, POLY)
            v = vd.load([s, 0])  # (BN, D)
            acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None])
            m_i = m_new
        return acc, l_i, m_i

    @triton.jit
    def _band_fwd(
        Q, K, V, Out, LSE, BAD,
        sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sob, soh, son,
        H, GROUP, N, LO, HI, qk_scale,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        ONE_LOOP: tl.constexpr, TMA: tl.constexpr = False, POLY: tl.constexpr = False,
        CONTAIN: tl.constexpr = False, DETECT: tl.constexpr = False,
    ):  # fmt: skip
        """One query tile. DETECT: once its output is stored, the tile's own positions, read
        as keys, are marked in BAD (by the first query head of each group), for
        ``_band_fixup``; CONTAIN (that pass, three-loop form): the marks in BAD are read and
        each key tile contained (``_contain``: a block-wide reduction and a branch per tile,
        which in every tile of the first pass took 0.72 ms of 2.22 at n = 65536 on an
        H100)."""
        start_m = tl.program_id(0) * BLOCK_M
        bh = tl.program_id(1)
        b, h = bh // H, bh % H
        hk = h // GROUP
        offs_m = start_m + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, HEAD_DIM)
        q = tl.load(
            Q + b * sqb + h * sqh + offs_m[:, None] * sqn + offs_d[None, :],
            mask=offs_m[:, None] < N,
            other=0.0,
        )  # (BM, D)
        k_base = K + b * skb + hk * skh
        v_base = V + b * svb + hk * svh
        bad_base = BAD + (b * (H // GROUP) + hk) * N  # (n,) marks of this kv head (CONTAIN)
        acc = tl.zeros((BLOCK_M, HEAD_DIM), dtype=tl.float32)
        l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
        m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
        seen = tl.zeros((BLOCK_M,), dtype=tl.int1)  # rows that may attend a bad position
        first, full_lo, full_hi, end = _ranges(start_m, N, LO, HI, BLOCK_M, BLOCK_N, 0)
        tl.static_assert(not (CONTAIN and (TMA or ONE_LOOP)), "containment: three-loop form")
        if TMA:
            acc, l_i, m_i = _fwd_tiles_tma(
                acc, l_i, m_i, q, k_base, v_base, offs_m, first, end, full_lo, full_hi,
                skn, svn, N, LO, HI, qk_scale, BLOCK_N, HEAD_DIM, POLY,
            )  # fmt: skip
        elif ONE_LOOP:
            acc, l_i, m_i = _fwd_tiles_one_loop(
                acc, l_i, m_i, q, k_base, v_base, offs_m, first, end, full_lo, full_hi,
                skn, svn, N, LO, HI, qk_scale, BLOCK_N, HEAD_DIM, POLY,
            )  # fmt: skip
        else:
            acc, l_i, m_i, seen = _fwd_tiles(
                acc, l_i, m_i, seen, q, k_base, v_base, bad_base, offs_m, first, full_lo,
                skn, svn, N, LO, HI, qk_scale, True, BLOCK_N, HEAD_DIM, POLY, CONTAIN,
            )  # fmt: skip
            acc, l_i, m_i, seen = _fwd_tiles(
                acc, l_i, m_i, seen, q, k_base, v_base, bad_base, offs_m, full_lo, full_hi,
                skn, svn, N, LO, HI, qk_scale, False, BLOCK_N, HEAD_DIM, POLY, CONTAIN,
            )  # fmt: skip
            acc, l_i, m_i, seen = _fwd_tiles(
                acc, l_i, m_i, seen, q, k_base, v_base, bad_base, offs_m, full_hi, end,
                skn, svn, N, LO, HI, qk_scale, True, BLOCK_N, HEAD_DIM, POLY, CONTAIN,
            )  # fmt: skip
        empty = l_i == 0.0  # a row with no key in the band: zeros, and +inf as its lse
        out = acc / tl.where(empty, 1.0, l_i)[:, None]
        lse = tl.where(empty, float("inf"), m_i + tl.math.log2(tl.where(empty, 1.0, l_i)))
        if CONTAIN:  # rows that may attend a bad position: NaN, and +inf (no gradient)
            out = tl.where(seen[:, None], float("nan"), out)
            lse = tl.where(seen, float("inf"), lse)
        tl.store(LSE + bh * N + offs_m, lse, mask=offs_m < N)
        tl.store(
            Out + b * sob + h * soh + offs_m[:, None] * son + offs_d[None, :],
            out.to(Out.dtype.element_ty),
            mask=offs_m[:, None] < N,
        )
        if DETECT:  # noqa: SIM102 (a compile-time branch around a run-time one)
            if h % GROUP == 0:
                _mark_rows(k_base, v_base, bad_base, offs_m, skn, svn, N, HEAD_DIM)

    @triton.jit
    def _band_fixup(
        Q, K, V, Out, LSE, BAD,
        sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sob, soh, son,
        H, GROUP, N, LO, HI, qk_scale,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        SPAN: tl.constexpr,
    ):  # fmt: skip
        """The second pass of a containing forward: a query tile is computed again with
        containment when a position the first pass (DETECT) marked lies among the keys that
        pass may have read for its rows; any other exits after reading those marks (a few
        hundred bytes). The first pass spreads a NaN value to every row of its tile (0 · NaN
        in the product), and its tiles may be larger than this pass's: so the keys checked
        are those of the aligned SPAN x SPAN tiles around this one (SPAN a multiple of every
        first-pass BLOCK_M and BLOCK_N)."""
        start_m = tl.program_id(0) * BLOCK_M
        bh = tl.program_id(1)
        b, h = bh // H, bh % H
        bad_base = BAD + (b * (H // GROUP) + h // GROUP) * N
        first, _, _, end = _ranges((start_m // SPAN) * SPAN, N, LO, HI, SPAN, SPAN, 0)
        hit = tl.zeros((BLOCK_N,), dtype=tl.int32)
        for s in range(first, end, BLOCK_N):
            hit = tl.maximum(hit, _bad_keys(bad_base, s + tl.arange(0, BLOCK_N), N).to(tl.int32))
        if tl.max(hit, 0) != 0:
            _band_fwd(
                Q, K, V, Out, LSE, BAD, sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sob, soh,
                son, H, GROUP, N, LO, HI, qk_scale, HEAD_DIM, BLOCK_M, BLOCK_N, False, False,
                False, True,
            )  # fmt: skip

    @triton.jit
    def _bwd_delta(
        Out, DO, LSE, DELTA, DOC, sob, soh, son, sdb, sdh, sdn, H, N,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, CONTAIN: tl.constexpr = False,
    ):  # fmt: skip
        """delta_i = sum_d dO_id * O_id (float32), the softmax backward's row term; 0 for a
        row whose lse is +inf (no key; with CONTAIN also a NaN row that may attend a bad
        position: its probabilities are then 0 in the backward). CONTAIN: dO with those rows
        0 into DOC (contiguous (B, H, n, D)), so that a non-finite gradient reaching a NaN
        row goes no further."""
        start_m = tl.program_id(0) * BLOCK_M
        bh = tl.program_id(1)
        b, h = bh // H, bh % H
        offs_m = start_m + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, HEAD_DIM)
        rows = offs_m[:, None] < N
        o = tl.load(Out + b * sob + h * soh + offs_m[:, None] * son + offs_d[None, :], mask=rows)
        do = tl.load(DO + b * sdb + h * sdh + offs_m[:, None] * sdn + offs_d[None, :], mask=rows)
        dead = tl.load(LSE + bh * N + offs_m, mask=offs_m < N, other=0.0) == float("inf")
        if CONTAIN:
            do = tl.where(dead[:, None], tl.zeros_like(do), do)
            doc = DOC + bh.to(tl.int64) * N * HEAD_DIM
            tl.store(doc + offs_m[:, None] * HEAD_DIM + offs_d[None, :], do, mask=rows)
        delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
        delta = tl.where(dead, 0.0, delta)  # O is NaN on a contained row
        tl.store(DELTA + bh * N + offs_m, delta, mask=offs_m < N)

    @triton.jit
    def _dkdv_tiles(
        dk, dv, k, v, q_base, do_base, lse_base, delta_base, offs_n, start, stop,
        stride_qn, stride_don, N, LO, HI, qk_scale,
        MASK: tl.constexpr, BLOCK_M: tl.constexpr, HEAD_DIM: tl.constexpr,
    ):  # fmt: skip
        offs_d = tl.arange(0, HEAD_DIM)
        for s in range(start, stop, BLOCK_M):
            offs_m = s + tl.arange(0, BLOCK_M)
            if MASK:
                rows = offs_m[:, None] < N
                q = tl.load(q_base + offs_m[:, None] * stride_qn + offs_d[None, :], mask=rows)
                do = tl.load(do_base + offs_m[:, None] * stride_don + offs_d[None, :], mask=rows)
                lse = tl.load(lse_base + offs_m, mask=offs_m < N, other=float("inf"))
                delta = tl.load(delta_base + offs_m, mask=offs_m < N, other=0.0)
            else:
                q = tl.load(q_base + offs_m[:, None] * stride_qn + offs_d[None, :])
                do = tl.load(do_base + offs_m[:, None] * stride_don + offs_d[None, :])
                lse = tl.load(lse_base + offs_m)
                delta = tl.load(delta_base + offs_m)
            qkt = tl.dot(k, tl.trans(q)) * qk_scale  # (BN, BM)
            pt = tl.math.exp2(qkt - lse[None, :])
            if MASK:
                d = offs_m[None, :] - offs_n[:, None]
                ok = (d >= LO) & (d <= HI) & (offs_m[None, :] < N)
                pt = tl.where(ok, pt, 0.0)
            dv = tl.dot(pt.to(do.dtype), do, dv)
            dpt = tl.dot(v, tl.trans(do))  # (BN, BM)
            dst = pt * (dpt - delta[None, :])
            dk = tl.dot(dst.to(q.dtype), q, dk)
        return dk, dv

    @triton.jit
    def _band_bwd_dkdv(
        Q, K, V, DO, LSE, DELTA, DK, DV, BAD,
        sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sdb, sdh, sdn,
        sdkb, sdkh, sdkn, sdvb, sdvh, sdvn,
        H, HK, GROUP, N, LO, HI, qk_scale, sm_scale,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CONTAIN: tl.constexpr,
    ):  # fmt: skip
        start_n = tl.program_id(0) * BLOCK_N
        bhk = tl.program_id(1)
        b, hk = bhk // HK, bhk % HK
        offs_n = start_n + tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, HEAD_DIM)
        cols = offs_n[:, None] < N
        k = tl.load(K + b * skb + hk * skh + offs_n[:, None] * skn + offs_d[None, :], mask=cols)
        v = tl.load(V + b * svb + hk * svh + offs_n[:, None] * svn + offs_d[None, :], mask=cols)
        if CONTAIN:  # bad positions as zeros: every row that may attend one is NaN (lse +inf,
            # probabilities 0), so their gradients come out 0 and no NaN reaches the others
            bad = _bad_keys(BAD + bhk * N, offs_n, N)[:, None]
            k = tl.where(bad, tl.zeros_like(k), k)
            v = tl.where(bad, tl.zeros_like(v), v)
        dk = tl.zeros((BLOCK_N, HEAD_DIM), dtype=tl.float32)
        dv = tl.zeros((BLOCK_N, HEAD_DIM), dtype=tl.float32)
        first, full_lo, full_hi, end = _ranges(start_n, N, LO, HI, BLOCK_N, BLOCK_M, 1)
        for g in range(0, GROUP):
            h = hk * GROUP + g
            q_base = Q + b * sqb + h * sqh
            do_base = DO + b * sdb + h * sdh
            lse_base = LSE + (b * H + h) * N
            delta_base = DELTA + (b * H + h) * N
            dk, dv = _dkdv_tiles(
                dk, dv, k, v, q_base, do_base, lse_base, delta_base, offs_n, first, full_lo,
                sqn, sdn, N, LO, HI, qk_scale, True, BLOCK_M, HEAD_DIM,
            )  # fmt: skip
            dk, dv = _dkdv_tiles(
                dk, dv, k, v, q_base, do_base, lse_base, delta_base, offs_n, full_lo, full_hi,
                sqn, sdn, N, LO, HI, qk_scale, False, BLOCK_M, HEAD_DIM,
            )  # fmt: skip
            dk, dv = _dkdv_tiles(
                dk, dv, k, v, q_base, do_base, lse_base, delta_base, offs_n, full_hi, end,
                sqn, sdn, N, LO, HI, qk_scale, True, BLOCK_M, HEAD_DIM,
            )  # fmt: skip
        tl.store(
            DK + b * sdkb + hk * sdkh + offs_n[:, None] * sdkn + offs_d[None, :],
            (dk * sm_scale).to(DK.dtype.element_ty),
            mask=cols,
        )
        tl.store(
            DV + b * sdvb + hk * sdvh + offs_n[:, None] * sdvn + offs_d[None, :],
            dv.to(DV.dtype.element_ty),
            mask=cols,
        )

    @triton.jit
    def _dq_tiles(
        dq, q, do, lse, delta, k_base, v_base, bad_base, cnt_base, offs_m, start, stop,
        stride_kn, stride_vn, N, LO, HI, qk_scale,
        MASK: tl.constexpr, BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr,
        CONTAIN: tl.constexpr,
    ):  # fmt: skip
        offs_d = tl.arange(0, HEAD_DIM)
        for s in range(start, stop, BLOCK_N):
            offs_n = s + tl.arange(0, BLOCK_N)
            if MASK:
                cols = offs_n[:, None] < N
                k = tl.load(k_base + offs_n[:, None] * stride_kn + offs_d[None, :], mask=cols)
                v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :], mask=cols)
            else:
                k = tl.load(k_base + offs_n[:, None] * stride_kn + offs_d[None, :])
                v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :])
            # as in the dK/dV kernel, for a tile that holds a bad position: two scalar loads
            # of the prefix counts tell (no block-wide reduction)
            if CONTAIN:  # noqa: SIM102 (a compile-time branch around a run-time one)
                if tl.load(cnt_base + tl.minimum(s + BLOCK_N, N)) > tl.load(cnt_base + s):
                    bad = _bad_keys(bad_base, offs_n, N)[:, None]
                    k = tl.where(bad, tl.zeros_like(k), k)
                    v = tl.where(bad, tl.zeros_like(v), v)
            qk = tl.dot(q, tl.trans(k)) * qk_scale  # (BM, BN)
            p = tl.math.exp2(qk - lse[:, None])
            if MASK:
                p = tl.where(_in_band(offs_m, offs_n, N, LO, HI), p, 0.0)
            dp = tl.dot(do, tl.trans(v))  # (BM, BN)
            ds = p * (dp - delta[:, None])
            dq = tl.dot(ds.to(k.dtype), k, dq)
        return dq

    @triton.jit
    def _band_bwd_dq(
        Q, K, V, DO, LSE, DELTA, DQ, BAD, CNT,
        sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sdb, sdh, sdn, sdqb, sdqh, sdqn,
        H, GROUP, N, LO, HI, qk_scale, sm_scale,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CONTAIN: tl.constexpr,
    ):  # fmt: skip
        start_m = tl.program_id(0) * BLOCK_M
        bh = tl.program_id(1)
        b, h = bh // H, bh % H
        hk = h // GROUP
        offs_m = start_m + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, HEAD_DIM)
        rows = offs_m[:, None] < N
        q = tl.load(Q + b * sqb + h * sqh + offs_m[:, None] * sqn + offs_d[None, :], mask=rows)
        do = tl.load(DO + b * sdb + h * sdh + offs_m[:, None] * sdn + offs_d[None, :], mask=rows)
        lse = tl.load(LSE + bh * N + offs_m, mask=offs_m < N, other=float("inf"))
        delta = tl.load(DELTA + bh * N + offs_m, mask=offs_m < N, other=0.0)
        k_base = K + b * skb + hk * skh
        v_base = V + b * svb + hk * svh
        bad_base = BAD + (b * (H // GROUP) + hk) * N
        cnt_base = CNT + (b * (H // GROUP) + hk) * (N + 1)  # prefix counts of the marks
        dq = tl.zeros((BLOCK_M, HEAD_DIM), dtype=tl.float32)
        first, full_lo, full_hi, end = _ranges(start_m, N, LO, HI, BLOCK_M, BLOCK_N, 0)
        dq = _dq_tiles(
            dq, q, do, lse, delta, k_base, v_base, bad_base, cnt_base, offs_m, first, full_lo,
            skn, svn, N, LO, HI, qk_scale, True, BLOCK_N, HEAD_DIM, CONTAIN,
        )  # fmt: skip
        dq = _dq_tiles(
            dq, q, do, lse, delta, k_base, v_base, bad_base, cnt_base, offs_m, full_lo, full_hi,
            skn, svn, N, LO, HI, qk_scale, False, BLOCK_N, HEAD_DIM, CONTAIN,
        )  # fmt: skip
        dq = _dq_tiles(
            dq, q, do, lse, delta, k_base, v_base, bad_base, cnt_base, offs_m, full_hi, end,
            skn, svn, N, LO, HI, qk_scale, True, BLOCK_N, HEAD_DIM, CONTAIN,
        )  # fmt: skip
        tl.store(
            DQ + b * sdqb + h * sdqh + offs_m[:, None] * sdqn + offs_d[None, :],
            (dq * sm_scale).to(DQ.dtype.element_ty),
            mask=rows,
        )

    def _configs(pairs):
        return [
            triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, **extra}, num_warps=w, num_stages=s)
            for bm, bn, w, s, *rest in pairs
            for extra in [{"ONE_LOOP": rest[0]} if rest else {}]
        ]

    # (BLOCK_M, BLOCK_N, warps, stages[, ONE_LOOP]), the usual FlashAttention-2 tiles on
    # Hopper; configs that need more shared memory than the GPU has are skipped by the
    # autotuner. The one-loop forward at 64 x 64 won the sweep of benchmarks/band_tiles.py
    # (H100, local(512) and band(0, 512) at n = 65536, D = 128: 1.500 and 0.903 ms against the
    # three-loop form's best 1.559 and 0.990 ms)
    _FWD = [
        (64, 64, 4, 3, True),
        (128, 64, 8, 3, True),
        (128, 64, 8, 3),
        (128, 128, 8, 3),
        (128, 64, 4, 3),
        (64, 64, 4, 3),
    ]
    _DKDV = [(64, 128, 8, 3), (32, 128, 4, 3), (64, 64, 4, 3)]
    _DQ = [(128, 64, 8, 3), (128, 32, 4, 3), (64, 64, 4, 3)]
    _KEY = ["HEAD_DIM", "NKEY", "CONTAIN", "DETECT"]  # and the tensors' dtypes (Triton adds them)

    def _tuned(kernel, pairs, small):
        if interpreting():  # one small config: the interpreter runs every config it is given
            return triton.autotune(configs=_configs([small]), key=_KEY)(kernel)
        return triton.autotune(configs=_configs(pairs), key=_KEY)(kernel)


if triton is not None:
    # The launched kernels take two extra arguments, WIDTH (hi - lo) and NKEY (the length's
    # power of two), unused in the body; NKEY is the autotuner's key (with the head dim and
    # dtype), so each length class is tuned once.
    @triton.jit
    def _band_fwd_k(
        Q, K, V, Out, LSE, BAD,
        sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sob, soh, son,
        H, GROUP, N, LO, HI, qk_scale, WIDTH, NKEY,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        ONE_LOOP: tl.constexpr = False, TMA: tl.constexpr = False, POLY: tl.constexpr = False,
        CONTAIN: tl.constexpr = False, DETECT: tl.constexpr = False,
    ):  # fmt: skip
        _band_fwd(
            Q, K, V, Out, LSE, BAD, sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sob, soh, son,
            H, GROUP, N, LO, HI, qk_scale, HEAD_DIM, BLOCK_M, BLOCK_N, ONE_LOOP, TMA, POLY,
            CONTAIN, DETECT,
        )  # fmt: skip

    @triton.jit
    def _band_bwd_dkdv_k(
        Q, K, V, DO, LSE, DELTA, DK, DV, BAD,
        sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sdb, sdh, sdn,
        sdkb, sdkh, sdkn, sdvb, sdvh, sdvn,
        H, HK, GROUP, N, LO, HI, qk_scale, sm_scale, WIDTH, NKEY,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CONTAIN: tl.constexpr = False,
    ):  # fmt: skip
        _band_bwd_dkdv(
            Q, K, V, DO, LSE, DELTA, DK, DV, BAD,
            sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sdb, sdh, sdn,
            sdkb, sdkh, sdkn, sdvb, sdvh, sdvn,
            H, HK, GROUP, N, LO, HI, qk_scale, sm_scale, HEAD_DIM, BLOCK_M, BLOCK_N, CONTAIN,
        )  # fmt: skip

    @triton.jit
    def _band_bwd_dq_k(
        Q, K, V, DO, LSE, DELTA, DQ, BAD, CNT,
        sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sdb, sdh, sdn, sdqb, sdqh, sdqn,
        H, GROUP, N, LO, HI, qk_scale, sm_scale, WIDTH, NKEY,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CONTAIN: tl.constexpr = False,
    ):  # fmt: skip
        _band_bwd_dq(
            Q, K, V, DO, LSE, DELTA, DQ, BAD, CNT,
            sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sdb, sdh, sdn, sdqb, sdqh, sdqn,
            H, GROUP, N, LO, HI, qk_scale, sm_scale, HEAD_DIM, BLOCK_M, BLOCK_N, CONTAIN,
        )  # fmt: skip

    _fwd_tuned = _tuned(_band_fwd_k, _FWD, (32, 32, 4, 1))
    # the fix-up pass runs one config: it recomputes only the tiles that see a marked position
    _FIXUP = (32, 32, 4, 1) if interpreting() else (64, 64, 4, 2)
    # its span: a multiple of every first-pass tile (the interpreter's tests set other
    # configs, up to 128)
    _SPAN = 128
    assert all(_SPAN % c.kwargs[t] == 0 for c in _fwd_tuned.configs for t in ("BLOCK_M", "BLOCK_N"))
    _dkdv_tuned = _tuned(_band_bwd_dkdv_k, _DKDV, (16, 32, 4, 1))
    _dq_tuned = _tuned(_band_bwd_dq_k, _DQ, (32, 16, 4, 1))


def clip_band(lo: int | None, hi: int | None, n: int) -> tuple[int, int]:
    """The band's bounds within a length-n sequence (|i - j| < n)."""
    lo = -n if lo is None else max(int(lo), -n)
    hi = n if hi is None else min(int(hi), n)
    return lo, hi


def _key(lo: int, hi: int, n: int) -> dict:
    return {"WIDTH": hi - lo, "NKEY": triton.next_power_of_2(max(n, 1))}


def prefix_counts(bad: torch.Tensor) -> torch.Tensor:
    """(..., n + 1) int32: how many ``bad`` (..., n) positions precede each position, the last
    entry all of them (int32: a count is at most n; torch's default int64 scan took 0.1 ms of
    0.18 at n = 65536, H 16 on an H100)."""
    return torch.nn.functional.pad(bad.to(torch.int32).cumsum(-1, dtype=torch.int32), (1, 0))


def band_forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    lo: int,
    hi: int,
    scale: float,
    contain: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(out (B, H, n, D), lse (B, H, n) float32 in log2 units, +inf for a row with no key;
    marks (B, H_kv, n) bool of the positions whose k or v row holds a NaN or ±inf when
    ``contain``, else an empty tensor).

    ``contain`` (:func:`band_attention`): the rows the band lets attend a marked position come
    out NaN with lse +inf, the others as if those positions were finite. The first pass
    computes every tile as usual and, once a tile's output is stored, marks the tile's own
    positions; a second pass recomputes with containment the tiles whose keys hold a marked
    one, and the others read a few hundred bytes of marks and exit. ``scale`` must be > 0
    (:func:`band_attention` folds any other into q)."""
    if not scale > 0:
        raise ValueError(f"band_forward: scale must be > 0, got {scale}")
    b, h, n, d = q.shape
    hk = k.shape[1]
    out = torch.empty_like(q)
    lse = torch.empty(b, h, n, dtype=torch.float32, device=q.device)
    marks = torch.empty(k.shape[:3] if contain else (0,), dtype=torch.bool, device=q.device)
    if n == 0 or lo > hi:
        out.zero_()
        lse.fill_(float("inf"))
        marks.zero_()  # no row sees a key: nothing to contain
        return out, lse, marks
    strides = (*q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *out.stride()[:3])
    grid = lambda cfg: (triton.cdiv(n, cfg["BLOCK_M"]), b * h)  # noqa: E731
    _fwd_tuned[grid](
        q, k, v, out, lse, marks if contain else lse,  # (lse: a pointer never read)
        *strides, h, h // hk, n, lo, hi, scale * LOG2E, **_key(lo, hi, n), HEAD_DIM=d,
        DETECT=bool(contain),
    )  # fmt: skip
    if contain:
        bm, bn, warps, stages = _FIXUP
        _band_fixup[(triton.cdiv(n, bm), b * h)](
            q, k, v, out, lse, marks, *strides, h, h // hk, n, lo, hi, scale * LOG2E,
            HEAD_DIM=d, BLOCK_M=bm, BLOCK_N=bn, SPAN=_SPAN, num_warps=warps,
            num_stages=stages,
        )  # fmt: skip
    return out, lse, marks


def band_backward(
    dout: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    lo: int,
    hi: int,
    scale: float,
    dlse: torch.Tensor | None = None,
    bad: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq, dk, dv) of ``band_forward``; dk and dv have k's heads (summed over each group).
    ``dlse`` (B, H, n): the gradient reaching the log-sum-exp output too (a merge of several
    attentions by their log-sum-exps), None for none. ``bad``: the forward's; the NaN rows
    pass no gradient back, the bad positions get 0."""
    b, h, n, d = q.shape
    hk = k.shape[1]
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    if n == 0 or lo > hi:
        return dq.zero_(), dk.zero_(), dv.zero_()
    dout = dout.contiguous() if dout.stride(-1) != 1 else dout
    delta = torch.empty(b, h, n, dtype=torch.float32, device=q.device)
    clean = delta if bad is None else torch.empty(q.shape, dtype=dout.dtype, device=q.device)
    _bwd_delta[(triton.cdiv(n, 64), b * h)](
        out, dout, lse, delta, clean, *out.stride()[:3], *dout.stride()[:3], h, n,
        HEAD_DIM=d, BLOCK_M=64, CONTAIN=bad is not None,
    )  # fmt: skip
    if bad is not None:  # dO with the NaN rows 0
        dout = clean
    if dlse is not None:
        # d lse_i / d s_ij = P_ij: the softmax backward dS = P (dP - delta) takes delta - dlse
        # (natural-log units: lse is in log2 units, so dlse scales by log2(e))
        delta = delta - dlse.float().nan_to_num(posinf=0.0, neginf=0.0) * LOG2E
    key = _key(lo, hi, n)
    common = (*q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *dout.stride()[:3])
    grid = lambda cfg: (triton.cdiv(n, cfg["BLOCK_N"]), b * hk)  # noqa: E731
    marks = delta if bad is None else bad  # (delta: pointers never read)
    counts = delta if bad is None else prefix_counts(bad)
    _dkdv_tuned[grid](
        q, k, v, dout, lse, delta, dk, dv, marks, *common, *dk.stride()[:3], *dv.stride()[:3],
        h, hk, h // hk, n, lo, hi, scale * LOG2E, scale, **key, HEAD_DIM=d,
        CONTAIN=bad is not None,
    )  # fmt: skip
    grid = lambda cfg: (triton.cdiv(n, cfg["BLOCK_M"]), b * h)  # noqa: E731
    _dq_tuned[grid](
        q, k, v, dout, lse, delta, dq, marks, counts, *common, *dq.stride()[:3],
        h, h // hk, n, lo, hi, scale * LOG2E, scale, **key, HEAD_DIM=d,
        CONTAIN=bad is not None,
    )  # fmt: skip
    return dq, dk, dv


def _last_dim_contiguous(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


@torch.library.custom_op("sparsetorch::band_attention_fwd", mutates_args=())
def _band_fwd_op(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    lo: int,
    hi: int,
    scale: float,
    contain: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return band_forward(q, k, v, lo, hi, scale, contain)


@_band_fwd_op.register_fake
def _(q, k, v, lo, hi, scale, contain=False):
    marks = k.shape[:3] if contain else (0,)
    return (
        torch.empty_like(q),
        q.new_empty(q.shape[:3], dtype=torch.float32),
        q.new_empty(marks, dtype=torch.bool),
    )


@torch.library.custom_op("sparsetorch::band_attention_bwd", mutates_args=())
def _band_bwd_op(
    dout: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    lo: int,
    hi: int,
    scale: float,
    dlse: torch.Tensor | None,
    bad: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return band_backward(dout, q, k, v, out, lse, lo, hi, scale, dlse, bad)


@_band_bwd_op.register_fake
def _(dout, q, k, v, out, lse, lo, hi, scale, dlse, bad=None):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _setup_context(ctx, inputs, output):
    q, k, v, lo, hi, scale = inputs[:6]
    out, lse, marks = output
    ctx.save_for_backward(q, k, v, out, lse, marks)
    ctx.band = (lo, hi, scale)


def _backward(ctx, dout, dlse, _dmarks):
    q, k, v, out, lse, marks = ctx.saved_tensors
    lo, hi, scale = ctx.band
    if dout is None:  # only the log-sum-exp was used
        dout = torch.zeros_like(out)
    bad = marks if marks.numel() else None
    dq, dk, dv = _band_bwd_op(dout, q, k, v, out, lse, lo, hi, scale, dlse, bad)
    return dq, dk, dv, None, None, None, None


_band_fwd_op.register_autograd(_backward, setup_context=_setup_context)


def _positive_scale(q: torch.Tensor, scale: float | None) -> tuple[torch.Tensor, float]:
    """(q, scale) with the same scores ``q kᵀ · scale`` and scale > 0, which the kernels
    take (they scale each row's raw maximum): a negative scale's sign moves into q, and a
    zero scale becomes zero scores (q · 0, scale 1); differentiable in q."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    if scale > 0:
        return q, scale
    return (q * -1.0, -scale) if scale < 0 else (q * 0.0, 1.0)


def band_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    lo: int | None,
    hi: int | None,
    scale: float | None = None,
    contain: bool = False,
) -> torch.Tensor:
    """softmax(q kᵀ · scale) v over keys j with ``lo <= i - j <= hi`` (None: unbounded).

    q (B, H, n, D), k and v (B, H / group, n, D), float16/bfloat16, D in ``HEAD_DIMS``;
    returns (B, H, n, D). Differentiable (FlashAttention-2 backward).

    ``contain``: the kernel contains NaN and ±inf in k and v itself: a row the band lets
    attend a position whose k or v row holds one comes out NaN and passes no gradient back,
    every other row is computed as if those positions held finite values, and they get zero
    gradients. Without it a non-finite k or v entry may reach any row of its tiles (0 · NaN
    is NaN). With finite inputs it costs a read of k and v inside the kernel and a second
    launch that reads the marks (:func:`band_forward`)."""
    reason = unsupported(q, k, v)
    if reason is not None:
        raise ValueError(f"band_attention: {reason}")
    n = q.shape[2]
    lo, hi = clip_band(lo, hi, n)
    q, scale = _positive_scale(q, scale)
    q, k, v = (_last_dim_contiguous(t) for t in (q, k, v))
    return _band_fwd_op(q, k, v, lo, hi, scale, bool(contain))[0]


def band_attention_lse(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    lo: int | None,
    hi: int | None,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``band_attention`` and its rows' log-sum-exp: (out (B, H, n, D), lse (B, H, n) float32,
    log2 of the sum of exp2 of the scores in log2 units; +inf for a row with no key).
    Differentiable in both: attentions over disjoint key sets merge exactly by their lse."""
    reason = unsupported(q, k, v)
    if reason is not None:
        raise ValueError(f"band_attention_lse: {reason}")
    lo, hi = clip_band(lo, hi, q.shape[2])
    q, scale = _positive_scale(q, scale)
    q, k, v = (_last_dim_contiguous(t) for t in (q, k, v))
    out, lse, _ = _band_fwd_op(q, k, v, lo, hi, scale)
    return out, lse


__all__ = [
    "DTYPES",
    "HEAD_DIMS",
    "available",
    "band_attention",
    "band_attention_lse",
    "band_backward",
    "band_forward",
    "prefix_counts",
]
