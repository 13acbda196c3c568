// CPU kernels of a sparse Linear layer: forward y = x W^T, input gradient dx = dy W, the
// weight gradient at the kept positions only (sampled dense-dense product), and optimizer
// steps (Adam/AdamW, SGD) that touch only the kept entries of torch.optim's dense state.
//
// Layout (built in Python, kernels/cpu/packed.py):
//   CSR of W: rowptr (out + 1) int64, cols (nnz) int32 or int16 (read as uint16), vals (nnz)
//   float32 or bfloat16. CSC of W: colptr (in + 1), rows (nnz), perm (nnz) int32: the CSR
//   position of each CSC entry (the values are read through it: vals[perm[k]]).
//   Activations: xt (in, bp) float32, x transposed and zero-padded to bp columns, bp a
//   multiple of 8 (or bp = 1: then xt is x itself, one column).
//
// Vectorisation: GCC vector types of 8 floats (AVX2 ymm registers under -march=native;
// SSE pairs elsewhere), FMA contraction by the compiler. Threads: at::parallel_for (torch's
// intra-op pool, torch.get_num_threads()), rows split so that each thread gets the same
// number of nonzeros.
//
// Accumulation is in float32 for both value types; bfloat16 results are rounded once, to
// nearest even (c10::BFloat16).

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/BFloat16.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#ifdef __AVX2__
#include <immintrin.h>
#endif

#ifdef __linux__
#include <sys/mman.h>
#endif

#ifndef PREFETCH_DISTANCE
#define PREFETCH_DISTANCE 16
#endif

namespace {

// scattered accesses are prefetched this many entries ahead (measured: 8-32 alike, 0 is 2-3x
// slower on a scattered read-modify-write at 1% density)
constexpr int64_t kPrefetch = PREFETCH_DISTANCE;

using bf16 = c10::BFloat16;
typedef float vf8 __attribute__((vector_size(32)));

inline vf8 load8(const float* p) {
  vf8 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void store8(float* p, vf8 v) { std::memcpy(p, &v, sizeof(v)); }
inline vf8 splat(float x) { return vf8{x, x, x, x, x, x, x, x}; }
inline float hsum(vf8 v) {
  float s = 0.f;
  for (int i = 0; i < 8; ++i) s += v[i];
  return s;
}

#ifdef __AVX2__
// r[0..7] (8 rows of 8 floats) -> their transpose, in registers
inline void transpose8(__m256* r) {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 2; ++i) {
    u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}

inline __m256 load8f(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8f(const c10::BFloat16* p) {  // 8 bfloat16 -> 8 float32
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
#endif

inline float to_f(float v) { return v; }
inline float to_f(bf16 v) { return static_cast<float>(v); }
template <typename T>
inline T from_f(float v);
template <>
inline float from_f<float>(float v) { return v; }
template <>
inline bf16 from_f<bf16>(float v) { return bf16(v); }

// column / row indices: int32, or int16 storage read as unsigned (dims up to 65536)
inline int64_t ix(int32_t i) { return i; }
inline int64_t ix(int16_t i) { return static_cast<uint16_t>(i); }

template <typename F>
void dispatch_value(at::ScalarType t, const char* what, F&& f) {
  if (t == at::kFloat) {
    f(float{});
  } else if (t == at::kBFloat16) {
    f(bf16{});
  } else {
    TORCH_CHECK(false, what, " must be float32 or bfloat16, got ", t);
  }
}

template <typename F>
void dispatch_index(at::ScalarType t, const char* what, F&& f) {
  if (t == at::kInt) {
    f(int32_t{});
  } else if (t == at::kShort) {
    f(int16_t{});
  } else {
    TORCH_CHECK(false, what, " must be int32 or int16, got ", t);
  }
}

void check_cpu(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.device().is_cpu(), what, " must be a CPU tensor");
  TORCH_CHECK(t.is_contiguous(), what, " must be contiguous");
}

// Row ranges with about the same number of nonzeros each (one per thread), run in parallel.
// Rows are the unit of work; a thread gets rows [bounds[t], bounds[t + 1]). ``work_per_nnz``
// estimates the cost of an entry in units of about 0.1 ns of one core (measured on an AMD
// EPYC: a kernel column is ~1 unit, a scattered read-modify-write of the optimizer steps
// ~300); a thread is started for each kMinWork of them (about 0.2 ms): below, waking and
// joining threads costs more than it saves, and on a machine shared with other work a parallel
// region waits for its slowest thread.
constexpr int64_t kMinWork = 1 << 21;
constexpr int64_t kScattered = 300;  // units per entry of a scattered read-modify-write

template <typename F>
void parallel_rows(const int64_t* rowptr, int64_t nrows, int64_t work_per_nnz, F&& f) {
  const int64_t nnz = rowptr[nrows];
  int64_t threads = at::get_num_threads();
  const int64_t work = (nnz + nrows) * std::max<int64_t>(work_per_nnz, 1);
  threads = std::max<int64_t>(1, std::min<int64_t>(threads, work / kMinWork));
  threads = std::min<int64_t>(threads, std::max<int64_t>(nrows, 1));
  if (threads <= 1) {
    f(0, nrows);
    return;
  }
  std::vector<int64_t> bounds(threads + 1, nrows);
  bounds[0] = 0;
  for (int64_t t = 1; t < threads; ++t) {
    // first row whose start is at or past this thread's share of nonzeros + rows
    const int64_t target = (nnz + nrows) * t / threads;
    int64_t lo = 0, hi = nrows;
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      if (rowptr[mid] + mid < target) lo = mid + 1; else hi = mid;
    }
    bounds[t] = std::max(lo, bounds[t - 1]);
  }
  at::parallel_for(0, threads, 1, [&](int64_t tb, int64_t te) {
    for (int64_t t = tb; t < te; ++t) {
      if (bounds[t] < bounds[t + 1]) f(bounds[t], bounds[t + 1]);
    }
  });
}

// ------------------------------------------------------------------------------------------
// y[b, r] = sum_k val(k) * xt[idx[k], b] over the entries k of row r (CSR rows for the forward,
// CSC columns for the input gradient). One tile = TB consecutive columns b of xt, U chains of
// accumulators over the entries so that FMA latency is hidden.
template <int TB, typename V, typename I, bool PERM>
inline void row_tile(int64_t kb, int64_t ke, const I* __restrict idx, const V* __restrict vals,
                     const int32_t* __restrict perm, const float* __restrict xt, int64_t ld,
                     float* __restrict out) {
  constexpr int W = TB / 8;  // vectors per tile
  constexpr int U = W >= 4 ? 2 : (W == 3 ? 3 : (W == 2 ? 4 : 8));
  vf8 acc[U][W];
  for (int u = 0; u < U; ++u)
    for (int w = 0; w < W; ++w) acc[u][w] = splat(0.f);
  int64_t k = kb;
  for (; k + U <= ke; k += U) {
#pragma GCC unroll 8
    for (int u = 0; u < U; ++u) {
      const int64_t e = k + u;
      const vf8 v = splat(to_f(vals[PERM ? perm[e] : e]));
      const float* x = xt + ix(idx[e]) * ld;
#pragma GCC unroll 4
      for (int w = 0; w < W; ++w) acc[u][w] += v * load8(x + 8 * w);
    }
  }
  for (; k < ke; ++k) {
    const vf8 v = splat(to_f(vals[PERM ? perm[k] : k]));
    const float* x = xt + ix(idx[k]) * ld;
    for (int w = 0; w < W; ++w) acc[0][w] += v * load8(x + 8 * w);
  }
  for (int u = 1; u < U; ++u)
    for (int w = 0; w < W; ++w) acc[0][w] += acc[u][w];
  for (int w = 0; w < W; ++w) store8(out + 8 * w, acc[0][w]);
}

// one column of xt (bp = 1): a sparse dot product with x gathered
template <typename V, typename I, bool PERM>
inline float row_dot1(int64_t kb, int64_t ke, const I* __restrict idx, const V* __restrict vals,
                      const int32_t* __restrict perm, const float* __restrict x) {
  float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;
  int64_t k = kb;
#if defined(__AVX2__)
  if constexpr (std::is_same_v<V, float> && !PERM) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (; k + 16 <= ke; k += 16) {
      __m256i i0, i1;
      if constexpr (std::is_same_v<I, int16_t>) {
        i0 = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(idx + k)));
        i1 = _mm256_cvtepu16_epi32(
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(idx + k + 8)));
      } else {
        i0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx + k));
        i1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx + k + 8));
      }
      acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(vals + k), _mm256_i32gather_ps(x, i0, 4), acc0);
      acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(vals + k + 8), _mm256_i32gather_ps(x, i1, 4), acc1);
    }
    vf8 s;
    _mm256_storeu_ps(reinterpret_cast<float*>(&s), _mm256_add_ps(acc0, acc1));
    a0 = hsum(s);
  }
#endif
  for (; k + 4 <= ke; k += 4) {
    a0 += to_f(vals[PERM ? perm[k] : k]) * x[ix(idx[k])];
    a1 += to_f(vals[PERM ? perm[k + 1] : k + 1]) * x[ix(idx[k + 1])];
    a2 += to_f(vals[PERM ? perm[k + 2] : k + 2]) * x[ix(idx[k + 2])];
    a3 += to_f(vals[PERM ? perm[k + 3] : k + 3]) * x[ix(idx[k + 3])];
  }
  for (; k < ke; ++k) a0 += to_f(vals[PERM ? perm[k] : k]) * x[ix(idx[k])];
  return (a0 + a1) + (a2 + a3);
}

// Output rows are computed in groups of kRowGroup and written to y (batch, nrows) as runs of
// kRowGroup consecutive values per batch row (whole cache lines), not one value per row.
constexpr int64_t kRowGroup = 16;

template <typename V, typename I, bool PERM, typename O>
void spmm_impl(const float* xt, int64_t n, int64_t ld, int64_t bp, int64_t batch,
               const int64_t* ptr, const I* idx, const V* vals, const int32_t* perm,
               const O* bias, int64_t nrows, O* y, int64_t tile_bytes) {
  if (bp == 1) {
    parallel_rows(ptr, nrows, 8, [&](int64_t rb, int64_t re) {
      for (int64_t r = rb; r < re; ++r) {
        float s = row_dot1<V, I, PERM>(ptr[r], ptr[r + 1], idx, vals, perm, xt);
        if (bias) s += to_f(bias[r]);
        y[r] = from_f<O>(s);
      }
    });
    return;
  }
  // Tile width: the columns of xt one pass reads; the n rows' slices of it should stay in the
  // L2 cache while the pass over the weight's rows reuses them.
  int64_t tile = (tile_bytes / (4 * std::max<int64_t>(n, 1))) / 8 * 8;
  tile = std::max<int64_t>(8, std::min<int64_t>(32, tile));
  parallel_rows(ptr, nrows, bp, [&](int64_t rb, int64_t re) {
    alignas(32) float out[kRowGroup][32];
    for (int64_t b0 = 0; b0 < bp; b0 += tile) {  // the last tile may be narrower
      const int64_t tb = std::min<int64_t>(tile, bp - b0);
      const int64_t nb = std::min<int64_t>(tb, batch - b0);  // columns that are real rows
      if (nb <= 0) break;
      const float* x = xt + b0;
      for (int64_t r0 = rb; r0 < re; r0 += kRowGroup) {
        const int64_t nr = std::min<int64_t>(kRowGroup, re - r0);
        for (int64_t i = 0; i < nr; ++i) {
          const int64_t kb = ptr[r0 + i], ke = ptr[r0 + i + 1];
          switch (tb) {
            case 32: row_tile<32, V, I, PERM>(kb, ke, idx, vals, perm, x, ld, out[i]); break;
            case 24: row_tile<24, V, I, PERM>(kb, ke, idx, vals, perm, x, ld, out[i]); break;
            case 16: row_tile<16, V, I, PERM>(kb, ke, idx, vals, perm, x, ld, out[i]); break;
            default: row_tile<8, V, I, PERM>(kb, ke, idx, vals, perm, x, ld, out[i]); break;
          }
        }
        int64_t i0 = 0, j0 = 0;
#ifdef __AVX2__
        if constexpr (std::is_same_v<O, float>) {  // whole 8x8 blocks: transposed in registers
          for (; i0 + 8 <= nr; i0 += 8) {
            const __m256 bv = bias ? _mm256_loadu_ps(bias + r0 + i0) : _mm256_setzero_ps();
            for (j0 = 0; j0 + 8 <= nb; j0 += 8) {
              __m256 blk[8];
              for (int q = 0; q < 8; ++q) blk[q] = _mm256_load_ps(&out[i0 + q][j0]);
              transpose8(blk);
              for (int q = 0; q < 8; ++q)
                _mm256_storeu_ps(y + (b0 + j0 + q) * nrows + r0 + i0, _mm256_add_ps(blk[q], bv));
            }
            for (int64_t j = j0; j < nb; ++j)  // the columns past the last whole block
              for (int64_t i = i0; i < i0 + 8; ++i)
                y[(b0 + j) * nrows + r0 + i] = out[i][j] + (bias ? bias[r0 + i] : 0.f);
          }
        }
#endif
        for (int64_t j = 0; j < nb; ++j) {  // what the blocks left: rows i0.. of the group
          O* yrow = y + (b0 + j) * nrows + r0;
          for (int64_t i = i0; i < nr; ++i)
            yrow[i] = from_f<O>(out[i][j] + (bias ? to_f(bias[r0 + i]) : 0.f));
        }
      }
    }
  });
}

// ------------------------------------------------------------------------------------------
// Ops.

// The row stride of transposed activations with bp columns: bp itself up to 8; above, bp
// rounded up to an odd number of 16-float cache lines, so that rows do not all fall into the
// same cache sets (a power-of-two stride of 4 KiB, e.g. 1024 columns, maps every row's slice
// to one set of the L1 cache).
int64_t padded_stride(int64_t bp) {
  if (bp <= 8) return bp;  // half a cache line or less per row: no set conflicts, half the bytes
  int64_t ld = (bp + 15) / 16 * 16;
  if ((ld / 16) % 2 == 0) ld += 16;
  return ld;
}

// x (B, n) float32/bfloat16 -> (n, bp) float32 view (row stride padded_stride(bp)): x
// transposed, columns B..bp-1 zero. Blocked: 16 rows of x by 64 of its columns at a time.
at::Tensor transpose_pad(const at::Tensor& x, int64_t bp) {
  check_cpu(x, "x");
  TORCH_CHECK(x.dim() == 2, "x must be 2-D (B, n), got ", x.dim(), " dims");
  const int64_t batch = x.size(0), n = x.size(1);
  TORCH_CHECK(bp >= batch && (bp == 1 || bp % 8 == 0),
              "bp must be 1 or a multiple of 8, >= the batch ", batch, ", got ", bp);
  const int64_t ld = padded_stride(bp);
  auto buffer = at::empty({n, ld}, x.options().dtype(at::kFloat));
  float* o = buffer.data_ptr<float>();
  dispatch_value(x.scalar_type(), "x", [&](auto tag) {
    using V = decltype(tag);
    const V* xp = static_cast<const V*>(x.data_ptr());
    constexpr int64_t C = 64, R = 16;
    at::parallel_for(0, (n + C - 1) / C, std::max<int64_t>(1, kMinWork / (4 * C * bp)),
                     [&](int64_t cb, int64_t ce) {
      for (int64_t blk = cb; blk < ce; ++blk) {
        const int64_t c0 = blk * C, c1 = std::min(n, c0 + C);
        int64_t bdone = 0;  // rows of x transposed by whole 8x8 blocks
#ifdef __AVX2__
        for (; bdone + 8 <= batch; bdone += 8) {
          int64_t c = c0;
          for (; c + 8 <= c1; c += 8) {
            __m256 blk[8];
            for (int q = 0; q < 8; ++q) blk[q] = load8f(xp + (bdone + q) * n + c);
            transpose8(blk);
            for (int q = 0; q < 8; ++q) _mm256_storeu_ps(o + (c + q) * ld + bdone, blk[q]);
          }
          for (; c < c1; ++c)
            for (int64_t b = bdone; b < bdone + 8; ++b) o[c * ld + b] = to_f(xp[b * n + c]);
        }
#endif
        for (int64_t b0 = bdone; b0 < bp; b0 += R) {
          const int64_t b1 = std::min(bp, b0 + R), bx = std::min(batch, b1);
          for (int64_t c = c0; c < c1; ++c) {
            float* orow = o + c * ld;
            for (int64_t b = b0; b < bx; ++b) orow[b] = to_f(xp[b * n + c]);
            for (int64_t b = std::max(b0, batch); b < b1; ++b) orow[b] = 0.f;
          }
        }
      }
    });
  });
  return buffer.narrow(1, 0, bp);
}

// y (batch, nrows) = rows of (ptr, idx, vals[perm]) times xt (n, bp) (+ bias), in out_dtype
at::Tensor spmm(const at::Tensor& xt, int64_t batch, const at::Tensor& ptr, const at::Tensor& idx,
                const at::Tensor& vals, const std::optional<at::Tensor>& perm,
                const std::optional<at::Tensor>& bias, at::ScalarType out_dtype,
                int64_t tile_bytes) {
  TORCH_CHECK(xt.device().is_cpu() && xt.dim() == 2 && xt.stride(1) == 1,
              "xt must be a 2-D CPU tensor (n, bp) with contiguous rows");
  check_cpu(ptr, "ptr");
  check_cpu(idx, "idx");
  check_cpu(vals, "vals");
  TORCH_CHECK(xt.scalar_type() == at::kFloat, "xt must be float32");
  const int64_t bp = xt.size(1), ld = xt.size(0) > 1 ? xt.stride(0) : bp;
  TORCH_CHECK(bp == 1 || bp % 8 == 0, "xt must have 1 column or a multiple of 8, got ", bp);
  TORCH_CHECK(bp > 1 || ld == 1, "a one-column xt must be contiguous");
  TORCH_CHECK(batch >= 1 && batch <= bp, "batch must be in [1, ", bp, "], got ", batch);
  TORCH_CHECK(ptr.scalar_type() == at::kLong, "ptr must be int64");
  const int64_t nrows = ptr.numel() - 1;
  TORCH_CHECK(idx.numel() == ptr.data_ptr<int64_t>()[nrows], "idx must hold ptr[-1] entries");
  const int32_t* pp = nullptr;
  if (perm.has_value()) {
    check_cpu(*perm, "perm");
    TORCH_CHECK(perm->scalar_type() == at::kInt, "perm must be int32");
    pp = perm->data_ptr<int32_t>();
  }
  if (bias.has_value()) {
    check_cpu(*bias, "bias");
    TORCH_CHECK(bias->numel() == nrows && bias->scalar_type() == out_dtype,
                "bias must be (", nrows, ",) of the output dtype");
  }
  auto y = at::empty({batch, nrows}, xt.options().dtype(out_dtype));
  dispatch_value(vals.scalar_type(), "vals", [&](auto vtag) {
    using V = decltype(vtag);
    dispatch_index(idx.scalar_type(), "idx", [&](auto itag) {
      using I = decltype(itag);
      dispatch_value(out_dtype, "out_dtype", [&](auto otag) {
        using O = decltype(otag);
        const O* bptr = bias.has_value() ? static_cast<const O*>(bias->data_ptr()) : nullptr;
        const V* vp = static_cast<const V*>(vals.data_ptr());
        const I* ip = static_cast<const I*>(idx.data_ptr());
        O* yp = static_cast<O*>(y.data_ptr());
        const float* x = xt.data_ptr<float>();
        const int64_t* p = ptr.data_ptr<int64_t>();
        if (pp) {
          spmm_impl<V, I, true, O>(x, xt.size(0), ld, bp, batch, p, ip, vp, pp, bptr, nrows, yp,
                                   tile_bytes);
        } else {
          spmm_impl<V, I, false, O>(x, xt.size(0), ld, bp, batch, p, ip, vp, nullptr, bptr,
                                    nrows, yp, tile_bytes);
        }
      });
    });
  });
  return y;
}

// ------------------------------------------------------------------------------------------
// Sampled dense-dense product: g[k] = sum_b dyt[r, b] * xt[c, b] for every kept (r, c) of the
// CSR (k in row r), written packed (nnz,) in dtype and, if dense is given, at dense[r, c].

#ifdef __AVX2__
// [sum(a0), ..., sum(a7)] of eight vectors
inline vf8 hsum8(const vf8* a) {
  const __m256* m = reinterpret_cast<const __m256*>(a);
  __m256 t0 = _mm256_hadd_ps(m[0], m[1]), t1 = _mm256_hadd_ps(m[2], m[3]);
  __m256 t2 = _mm256_hadd_ps(m[4], m[5]), t3 = _mm256_hadd_ps(m[6], m[7]);
  __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
  __m256 s = _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20),
                           _mm256_permute2f128_ps(u0, u1, 0x31));
  vf8 out;
  std::memcpy(&out, &s, sizeof(out));
  return out;
}
#else
inline vf8 hsum8(const vf8* a) {
  vf8 out;
  for (int u = 0; u < 8; ++u) out[u] = hsum(a[u]);
  return out;
}
#endif

template <typename I, typename O>
void sddmm_impl(const float* dyt, int64_t ldy, const float* xt, int64_t ld, int64_t bp,
                const int64_t* ptr, const I* idx, int64_t nrows, int64_t ncols, O* g, O* dense) {
  parallel_rows(ptr, nrows, bp + (dense ? kScattered / 3 : 0), [&](int64_t rb, int64_t re) {
    for (int64_t r = rb; r < re; ++r) {
      const int64_t kb = ptr[r], ke = ptr[r + 1];
      const float* dy = dyt + r * ldy;
      O* drow = dense ? dense + r * ncols : nullptr;
      // the next row's dense positions: a cache miss each when a row keeps few entries
      // (fewer than one per cache line; denser rows stream and need no help)
      if (drow && r + 1 < re && (ptr[r + 2] - ke) * 16 < ncols) {
        O* next = drow + ncols;
        for (int64_t k = ke; k < ptr[r + 2]; ++k) __builtin_prefetch(next + ix(idx[k]), 1, 3);
      }
      int64_t k = kb;
      if (bp == 1) {
        const float d = dy[0];
        for (; k < ke; ++k) {
          const O v = from_f<O>(d * xt[ix(idx[k])]);
          g[k] = v;
          if (drow) drow[ix(idx[k])] = v;
        }
        continue;
      }
      const int64_t W = bp / 8;
      for (; k + 8 <= ke; k += 8) {
        vf8 acc[8];
        const float* x[8];
        for (int u = 0; u < 8; ++u) {
          acc[u] = splat(0.f);
          x[u] = xt + ix(idx[k + u]) * ld;
        }
        for (int64_t w = 0; w < W; ++w) {
          const vf8 d = load8(dy + 8 * w);
#pragma GCC unroll 8
          for (int u = 0; u < 8; ++u) acc[u] += d * load8(x[u] + 8 * w);
        }
        const vf8 s = hsum8(acc);
        for (int u = 0; u < 8; ++u) {
          const O v = from_f<O>(s[u]);
          g[k + u] = v;
          if (drow) drow[ix(idx[k + u])] = v;
        }
      }
      for (; k < ke; ++k) {
        const float* x = xt + ix(idx[k]) * ld;
        vf8 acc = splat(0.f);
        for (int64_t w = 0; w < W; ++w) acc += load8(dy + 8 * w) * load8(x + 8 * w);
        const O v = from_f<O>(hsum(acc));
        g[k] = v;
        if (drow) drow[ix(idx[k])] = v;
      }
    }
  });
}

at::Tensor sddmm(const at::Tensor& dyt, const at::Tensor& xt, const at::Tensor& ptr,
                 const at::Tensor& idx, const std::optional<at::Tensor>& dense,
                 at::ScalarType out_dtype) {
  TORCH_CHECK(dyt.device().is_cpu() && xt.device().is_cpu() && dyt.dim() == 2 &&
                  xt.dim() == 2 && dyt.stride(1) == 1 && xt.stride(1) == 1,
              "dyt and xt must be 2-D CPU tensors with contiguous rows");
  check_cpu(ptr, "ptr");
  check_cpu(idx, "idx");
  TORCH_CHECK(dyt.scalar_type() == at::kFloat && xt.scalar_type() == at::kFloat,
              "dyt and xt must be float32");
  TORCH_CHECK(dyt.size(1) == xt.size(1),
              "dyt (out, bp) and xt (in, bp) must have the same number of columns");
  const int64_t bp = xt.size(1);
  const int64_t ld = xt.size(0) > 1 ? xt.stride(0) : bp;
  const int64_t ldy = dyt.size(0) > 1 ? dyt.stride(0) : bp;
  TORCH_CHECK(bp == 1 || bp % 8 == 0, "bp must be 1 or a multiple of 8, got ", bp);
  TORCH_CHECK(bp > 1 || (ld == 1 && ldy == 1), "one-column dyt and xt must be contiguous");
  const int64_t nrows = ptr.numel() - 1, ncols = xt.size(0);
  TORCH_CHECK(dyt.size(0) == nrows, "dyt must have one row per row of ptr");
  auto g = at::empty({idx.numel()}, dyt.options().dtype(out_dtype));
  if (dense.has_value()) {
    check_cpu(*dense, "dense");
    TORCH_CHECK(dense->scalar_type() == out_dtype && dense->dim() == 2 &&
                    dense->size(0) == nrows && dense->size(1) == ncols,
                "dense must be (", nrows, ", ", ncols, ") of the output dtype");
  }
  dispatch_index(idx.scalar_type(), "idx", [&](auto itag) {
    using I = decltype(itag);
    dispatch_value(out_dtype, "out_dtype", [&](auto otag) {
      using O = decltype(otag);
      sddmm_impl<I, O>(dyt.data_ptr<float>(), ldy, xt.data_ptr<float>(), ld, bp,
                       ptr.data_ptr<int64_t>(),
                       static_cast<const I*>(idx.data_ptr()), nrows, ncols,
                       static_cast<O*>(g.data_ptr()),
                       dense.has_value() ? static_cast<O*>(dense->data_ptr()) : nullptr);
    });
  });
  return g;
}

// ------------------------------------------------------------------------------------------
// Gather / fill at the kept positions of a dense (rows, cols) tensor.

at::Tensor gather(const at::Tensor& dense, const at::Tensor& ptr, const at::Tensor& idx) {
  check_cpu(dense, "dense");
  const int64_t nrows = ptr.numel() - 1, ncols = dense.size(1);
  TORCH_CHECK(dense.dim() == 2 && dense.size(0) == nrows, "dense must be (rows, cols)");
  auto out = at::empty({idx.numel()}, dense.options());
  const int64_t* pp = ptr.data_ptr<int64_t>();
  dispatch_value(dense.scalar_type(), "dense", [&](auto vtag) {
    using V = decltype(vtag);
    dispatch_index(idx.scalar_type(), "idx", [&](auto itag) {
      using I = decltype(itag);
      const V* d = static_cast<const V*>(dense.data_ptr());
      const I* ip = static_cast<const I*>(idx.data_ptr());
      V* o = static_cast<V*>(out.data_ptr());
      parallel_rows(pp, nrows, kScattered / 3, [&](int64_t rb, int64_t re) {
        for (int64_t r = rb; r < re; ++r)
          for (int64_t k = pp[r]; k < pp[r + 1]; ++k) o[k] = d[r * ncols + ix(ip[k])];
      });
    });
  });
  return out;
}

// out[k] = vals[perm[k]]: the kept values in another order (CSR -> CSC). Random reads, so the
// values kPrefetch entries ahead are fetched early.
at::Tensor permute(const at::Tensor& vals, const at::Tensor& perm) {
  check_cpu(vals, "vals");
  check_cpu(perm, "perm");
  TORCH_CHECK(perm.scalar_type() == at::kInt && perm.numel() == vals.numel(),
              "perm must be int32 with one entry per value");
  auto out = at::empty({vals.numel()}, vals.options());
  const int64_t n = vals.numel();
  const int32_t* pp = perm.data_ptr<int32_t>();
  dispatch_value(vals.scalar_type(), "vals", [&](auto vtag) {
    using V = decltype(vtag);
    const V* v = static_cast<const V*>(vals.data_ptr());
    V* o = static_cast<V*>(out.data_ptr());
    at::parallel_for(0, n, kMinWork / 50, [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; ++k) {
        if (k + kPrefetch < e) __builtin_prefetch(v + pp[k + kPrefetch], 0, 3);
        o[k] = v[pp[k]];
      }
    });
  });
  return out;
}

void fill_kept(at::Tensor& dense, const at::Tensor& ptr, const at::Tensor& idx, double value) {
  check_cpu(dense, "dense");
  const int64_t nrows = ptr.numel() - 1, ncols = dense.size(1);
  TORCH_CHECK(dense.dim() == 2 && dense.size(0) == nrows, "dense must be (rows, cols)");
  const int64_t* pp = ptr.data_ptr<int64_t>();
  dispatch_value(dense.scalar_type(), "dense", [&](auto vtag) {
    using V = decltype(vtag);
    dispatch_index(idx.scalar_type(), "idx", [&](auto itag) {
      using I = decltype(itag);
      V* d = static_cast<V*>(dense.data_ptr());
      const I* ip = static_cast<const I*>(idx.data_ptr());
      const V v = from_f<V>(static_cast<float>(value));
      parallel_rows(pp, nrows, kScattered / 3, [&](int64_t rb, int64_t re) {
        for (int64_t r = rb; r < re; ++r)
          for (int64_t k = pp[r]; k < pp[r + 1]; ++k) d[r * ncols + ix(ip[k])] = v;
      });
    });
  });
}

// ------------------------------------------------------------------------------------------
// Optimizer steps on the kept entries. param is dense (rows, cols), the user's weight; the
// optimizer state (exp_avg, exp_avg_sq, max_exp_avg_sq, momentum_buffer) is packed: (nnz,) in
// CSR order, like vals, and read and written sequentially. The gradient is read packed
// (grad_packed: (nnz,), CSR order) or from a dense tensor at the kept positions. vals (nnz,)
// must hold the kept weights (param at the kept positions, CSR order) and receives the new
// ones: the weights are read from it and only written to param's scattered positions (the one
// scattered access left per entry). The formulas and their order follow torch.optim's
// single-tensor implementations.

// Visit the kept entries of rows [rb, re): f(k, i) with k the CSR position and i the flat
// position r * ncols + c. The dense tensors are read at scattered positions (a cache miss per
// entry at high sparsity): ``prefetch(i, k)`` is called kPrefetch entries ahead, so that
// the misses of consecutive entries overlap.

template <typename I, typename P, typename F>
inline void for_kept(const int64_t* ptr, const I* idx, int64_t rb, int64_t re, int64_t ncols,
                     P&& prefetch, F&& f) {
  const int64_t kend = ptr[re];
  int64_t r2 = rb;  // the row of entry k + kPrefetch
  for (int64_t r = rb; r < re; ++r) {
    const int64_t base = r * ncols;
    for (int64_t k = ptr[r]; k < ptr[r + 1]; ++k) {
      const int64_t kd = k + kPrefetch;
      if (kd < kend) {
        while (ptr[r2 + 1] <= kd) ++r2;
        prefetch(r2 * ncols + ix(idx[kd]), kd);
      }
      f(k, base + ix(idx[k]));
    }
  }
}

struct AdamArgs {  // scalars computed in double (as Python does), then rounded to float
  float beta2, eps, wd, decay, w1, w2, neg_step, bc2_sqrt;
  bool decoupled, maximize, amsgrad;
};

template <typename V, typename I>
void adam_impl(V* p, const V* grad, bool packed, V* m, V* v, V* vmax, const int64_t* ptr,
               const I* idx, int64_t nrows, int64_t ncols, V* vals, const AdamArgs& a) {
  const float w1 = a.w1, w2 = a.w2, neg_step = a.neg_step;
  parallel_rows(ptr, nrows, kScattered, [&](int64_t rb, int64_t re) {
    auto pre = [&](int64_t i, int64_t) {
      __builtin_prefetch(p + i, 1, 3);
      if (!packed) __builtin_prefetch(grad + i, 0, 3);
    };
    for_kept(ptr, idx, rb, re, ncols, pre, [&](int64_t k, int64_t i) {
        float g = to_f(packed ? grad[k] : grad[i]);
        if (a.maximize) g = -g;
        float w = to_f(vals[k]);
        if (a.wd != 0.f) {
          if (a.decoupled) w = w * a.decay;
          else g = g + a.wd * w;
        }
        float mk = to_f(m[k]);
        mk = mk + w1 * (g - mk);  // lerp(m, g, 1 - beta1), the weight < 0.5 branch
        float vk = to_f(v[k]) * a.beta2;
        vk = vk + w2 * g * g;
        float vd = vk;
        if (a.amsgrad) {
          vd = std::max(to_f(vmax[k]), vk);
          vmax[k] = from_f<V>(vd);
        }
        const float denom = std::sqrt(vd) / a.bc2_sqrt + a.eps;
        w = w + neg_step * mk / denom;
        m[k] = from_f<V>(mk);
        v[k] = from_f<V>(vk);
        const V out = from_f<V>(w);
        p[i] = out;
        vals[k] = out;
    });
  });
}

void adam_step(at::Tensor& param, const at::Tensor& grad, bool grad_packed, at::Tensor& exp_avg,
               at::Tensor& exp_avg_sq, const std::optional<at::Tensor>& max_exp_avg_sq,
               const at::Tensor& ptr, const at::Tensor& idx, at::Tensor& vals, double lr,
               double beta1, double beta2, double eps, double weight_decay, bool decoupled,
               bool maximize, double bias_correction1, double bias_correction2_sqrt) {
  for (const at::Tensor* t : std::initializer_list<const at::Tensor*>{
           &param, &grad, &exp_avg, &exp_avg_sq, &ptr, &idx, &vals})
    check_cpu(*t, "adam_step tensors");
  const int64_t nrows = ptr.numel() - 1, ncols = param.size(1);
  const int64_t nnz = idx.numel();
  TORCH_CHECK(exp_avg.numel() == nnz && exp_avg_sq.numel() == nnz && vals.numel() == nnz,
              "exp_avg, exp_avg_sq and vals must be packed: (nnz,)");
  TORCH_CHECK(grad_packed ? grad.numel() == idx.numel() : grad.sizes() == param.sizes(),
              "grad must be (nnz,) when packed, else shaped like param");
  const auto dt = param.scalar_type();
  TORCH_CHECK(grad.scalar_type() == dt && exp_avg.scalar_type() == dt &&
                  exp_avg_sq.scalar_type() == dt && vals.scalar_type() == dt,
              "param, grad, state and vals must have one dtype");
  AdamArgs a;
  a.beta2 = static_cast<float>(beta2);
  a.eps = static_cast<float>(eps);
  a.wd = static_cast<float>(weight_decay);
  a.decay = static_cast<float>(1.0 - lr * weight_decay);
  a.w1 = static_cast<float>(1.0 - beta1);
  a.w2 = static_cast<float>(1.0 - beta2);
  a.neg_step = static_cast<float>(-(lr / bias_correction1));
  a.bc2_sqrt = static_cast<float>(bias_correction2_sqrt);
  a.decoupled = decoupled;
  a.maximize = maximize;
  a.amsgrad = max_exp_avg_sq.has_value();
  if (a.amsgrad) {
    check_cpu(*max_exp_avg_sq, "max_exp_avg_sq");
    TORCH_CHECK(max_exp_avg_sq->numel() == nnz && max_exp_avg_sq->scalar_type() == dt,
                "max_exp_avg_sq must be packed: (nnz,)");
  }
  dispatch_value(dt, "param", [&](auto vtag) {
    using V = decltype(vtag);
    dispatch_index(idx.scalar_type(), "idx", [&](auto itag) {
      using I = decltype(itag);
      adam_impl<V, I>(static_cast<V*>(param.data_ptr()), static_cast<const V*>(grad.data_ptr()),
                      grad_packed, static_cast<V*>(exp_avg.data_ptr()),
                      static_cast<V*>(exp_avg_sq.data_ptr()),
                      a.amsgrad ? static_cast<V*>(max_exp_avg_sq->data_ptr()) : nullptr,
                      ptr.data_ptr<int64_t>(), static_cast<const I*>(idx.data_ptr()), nrows,
                      ncols, static_cast<V*>(vals.data_ptr()), a);
    });
  });
}

template <typename V, typename I>
void sgd_impl(V* p, const V* grad, bool packed, V* buf, bool first, const int64_t* ptr,
              const I* idx, int64_t nrows, int64_t ncols, V* vals, float lr, float momentum,
              float keep_, float wd, bool nesterov, bool maximize) {
  const float keep = keep_;
  parallel_rows(ptr, nrows, kScattered, [&](int64_t rb, int64_t re) {
    auto pre = [&](int64_t i, int64_t) {
      __builtin_prefetch(p + i, 1, 3);
      if (!packed) __builtin_prefetch(grad + i, 0, 3);
    };
    for_kept(ptr, idx, rb, re, ncols, pre, [&](int64_t k, int64_t i) {
        float g = to_f(packed ? grad[k] : grad[i]);
        if (maximize) g = -g;
        float w = to_f(vals[k]);
        if (wd != 0.f) g = g + wd * w;
        if (buf) {
          float b = first ? g : to_f(buf[k]) * momentum + keep * g;
          buf[k] = from_f<V>(b);
          b = to_f(buf[k]);
          g = nesterov ? g + momentum * b : b;
        }
        const V out = from_f<V>(w + (-lr) * g);
        p[i] = out;
        vals[k] = out;
    });
  });
}

void sgd_step(at::Tensor& param, const at::Tensor& grad, bool grad_packed,
              const std::optional<at::Tensor>& momentum_buffer, bool first, const at::Tensor& ptr,
              const at::Tensor& idx, at::Tensor& vals, double lr, double momentum,
              double dampening, double weight_decay, bool nesterov, bool maximize) {
  for (const at::Tensor* t :
       std::initializer_list<const at::Tensor*>{&param, &grad, &ptr, &idx, &vals})
    check_cpu(*t, "sgd_step tensors");
  const int64_t nrows = ptr.numel() - 1, ncols = param.size(1);
  TORCH_CHECK(grad_packed ? grad.numel() == idx.numel() : grad.sizes() == param.sizes(),
              "grad must be (nnz,) when packed, else shaped like param");
  const auto dt = param.scalar_type();
  TORCH_CHECK(grad.scalar_type() == dt && vals.scalar_type() == dt,
              "param, grad and vals must have one dtype");
  if (momentum_buffer.has_value()) {
    check_cpu(*momentum_buffer, "momentum_buffer");
    TORCH_CHECK(momentum_buffer->numel() == idx.numel() && momentum_buffer->scalar_type() == dt,
                "momentum_buffer must be packed: (nnz,)");
  }
  dispatch_value(dt, "param", [&](auto vtag) {
    using V = decltype(vtag);
    dispatch_index(idx.scalar_type(), "idx", [&](auto itag) {
      using I = decltype(itag);
      sgd_impl<V, I>(static_cast<V*>(param.data_ptr()), static_cast<const V*>(grad.data_ptr()),
                     grad_packed,
                     momentum_buffer.has_value() ? static_cast<V*>(momentum_buffer->data_ptr())
                                                 : nullptr,
                     first, ptr.data_ptr<int64_t>(), static_cast<const I*>(idx.data_ptr()), nrows,
                     ncols, static_cast<V*>(vals.data_ptr()), static_cast<float>(lr),
                     static_cast<float>(momentum), static_cast<float>(1.0 - dampening),
                     static_cast<float>(weight_decay), nesterov, maximize);
    });
  });
}

// Ask the kernel to back a tensor's memory with 2 MiB pages (Linux transparent huge pages,
// when enabled as "always" or "madvise"): the optimizer steps touch one entry per page-sized
// stretch at high sparsity, and fewer, larger pages mean fewer TLB misses. Only a hint: call it
// before the memory is first written; no effect where the kernel has no such pages.
void advise_huge_pages(const at::Tensor& t) {
#ifdef __linux__
  const uintptr_t huge = uintptr_t(1) << 21;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(t.data_ptr());
  const uintptr_t end = begin + t.numel() * t.element_size();
  const uintptr_t a = (begin + huge - 1) & ~(huge - 1), b = end & ~(huge - 1);
  if (b > a) madvise(reinterpret_cast<void*>(a), b - a, MADV_HUGEPAGE);
#endif
}

}  // namespace

TORCH_LIBRARY(sparsetorch_cpu, m) {
  m.def("transpose_pad(Tensor x, int bp) -> Tensor", &transpose_pad);
  m.def(
      "spmm(Tensor xt, int batch, Tensor ptr, Tensor idx, Tensor vals, Tensor? perm, "
      "Tensor? bias, ScalarType out_dtype, int tile_bytes=262144) -> Tensor",
      &spmm);
  m.def(
      "sddmm(Tensor dyt, Tensor xt, Tensor ptr, Tensor idx, Tensor(a!)? dense, "
      "ScalarType out_dtype) -> Tensor",
      &sddmm);
  m.def("gather(Tensor dense, Tensor ptr, Tensor idx) -> Tensor", &gather);
  m.def("permute(Tensor vals, Tensor perm) -> Tensor", &permute);
  m.def("advise_huge_pages(Tensor t) -> ()", &advise_huge_pages);
  m.def("fill_kept(Tensor(a!) dense, Tensor ptr, Tensor idx, float value) -> ()", &fill_kept);
  m.def(
      "adam_step(Tensor(a!) param, Tensor grad, bool grad_packed, Tensor(b!) exp_avg, "
      "Tensor(c!) exp_avg_sq, Tensor(d!)? max_exp_avg_sq, Tensor ptr, Tensor idx, "
      "Tensor(e!) vals, float lr, float beta1, float beta2, float eps, float weight_decay, "
      "bool decoupled, bool maximize, float bias_correction1, float bias_correction2_sqrt) -> ()",
      &adam_step);
  m.def(
      "sgd_step(Tensor(a!) param, Tensor grad, bool grad_packed, Tensor(b!)? momentum_buffer, "
      "bool first, Tensor ptr, Tensor idx, Tensor(c!) vals, float lr, float momentum, "
      "float dampening, float weight_decay, bool nesterov, bool maximize) -> ()",
      &sgd_step);
}
