// Highway kernels compiled for several instruction sets and picked at run time.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "runtime/cpu/simd_kernels.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

#include <algorithm>
#include <vector>

#include "runtime/cpu/kernels.h"

HWY_BEFORE_NAMESPACE();
namespace moshi {
namespace cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// KV vectors of one panel's columns [c0, c0 + KV·L) against NC rows of x (element (n, i) at
// x[n·ldx + i·sx]): the panel streams once, every (row, column) sum stays in its own lane.
// Weights are f32 or bf16 (widened to f32 on load: the kernel is bound by reading them).
template <class D>
HWY_INLINE hn::Vec<D> LoadWeights(D d, const float* HWY_RESTRICT p) {
  return hn::Load(d, p);
}
template <class D>
HWY_INLINE hn::Vec<D> LoadWeights(D d, const hwy::bfloat16_t* HWY_RESTRICT p) {
  const hn::Rebind<hwy::bfloat16_t, D> dbf;
  return hn::PromoteTo(d, hn::Load(dbf, p));
}

template <int NC, int KV, typename TW>
HWY_INLINE void PanelTile(const float* HWY_RESTRICT x, int64_t ldx, int64_t sx, const TW* HWY_RESTRICT wp,
                          int64_t i0, int64_t i1, int64_t c0, int64_t ncols, float* HWY_RESTRICT y, int64_t ldy) {
  const hn::ScalableTag<float> d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  using V = hn::Vec<decltype(d)>;
  V acc[NC][KV];
  HWY_ALIGN float tmp[64];
  for (int n = 0; n < NC; ++n)
    for (int k = 0; k < KV; ++k) {
      acc[n][k] = hn::Zero(d);
      if (i0 > 0) {  // continue the partial sums of earlier blocks of i
        const int64_t col = k * L, valid = std::min<int64_t>(ncols - col, L);
        if (valid == L) {
          acc[n][k] = hn::LoadU(d, y + n * ldy + c0 + col);
        } else if (valid > 0) {
          for (int64_t j = 0; j < L; ++j) tmp[j] = j < valid ? y[n * ldy + c0 + col + j] : 0.f;
          acc[n][k] = hn::Load(d, tmp);
        }
      }
    }
  const TW* w = wp + i0 * kPanel + c0;
  for (int64_t i = i0; i < i1; ++i, w += kPanel) {
    V wv[KV];
    for (int k = 0; k < KV; ++k) wv[k] = LoadWeights(d, w + k * L);
    for (int n = 0; n < NC; ++n) {
      const V xb = hn::Set(d, x[n * ldx + i * sx]);
      for (int k = 0; k < KV; ++k) acc[n][k] = hn::MulAdd(wv[k], xb, acc[n][k]);
    }
  }
  for (int n = 0; n < NC; ++n)
    for (int k = 0; k < KV; ++k) {
      const int64_t col = k * L, valid = ncols - col;
      if (valid >= L) {
        hn::StoreU(acc[n][k], d, y + n * ldy + c0 + col);
      } else if (valid > 0) {
        hn::Store(acc[n][k], d, tmp);
        for (int64_t j = 0; j < valid; ++j) y[n * ldy + c0 + col + j] = tmp[j];
      }
    }
}

template <int NC, int KV, typename TW>
HWY_INLINE void PanelRows(const float* x, int64_t ldx, const TW* wp, int64_t in, int64_t out, int64_t p0,
                          int64_t p1, float* y, int64_t ldy) {
  const hn::ScalableTag<float> d;
  const int64_t step = KV * static_cast<int64_t>(hn::Lanes(d));
  int64_t lx = ldx, sx = 1;
  if (NC > 4) {
    // Many rows: interleave them ([in][NC]) so each step's NC broadcasts come from one cache
    // line instead of NC rows that together overflow L1.
    thread_local std::vector<float> xt;
    xt.resize(static_cast<size_t>(in * NC));
    for (int n = 0; n < NC; ++n)
      for (int64_t i = 0; i < in; ++i) xt[i * NC + n] = x[n * ldx + i];
    x = xt.data();
    lx = 1;
    sx = NC;
  }
  // With one pass per column group (KV < 4), block i so that the panel rows of a block stay in
  // cache across the passes; with one pass per panel there is nothing to reuse.
  const int64_t ib = step >= kPanel ? in : 256;
  for (int64_t p = p0; p < p1; ++p) {
    const TW* panel = wp + p * in * kPanel;
    for (int64_t i0 = 0; i0 < in; i0 += ib) {
      const int64_t i1 = std::min(in, i0 + ib);
      if (ib < in && i1 < in) {
        // Several strided passes read this block: pull the next block in as one sequential
        // stream so the passes find it in cache instead of waiting on memory line by line.
        const char* nb = reinterpret_cast<const char*>(panel + i1 * kPanel);
        const int64_t bytes = (std::min(in, i1 + ib) - i1) * kPanel * 4;
        for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch(nb + off, 0, 3);
      }
      for (int64_t c0 = 0; c0 < kPanel; c0 += step) {
        const int64_t ncols = out - p * kPanel - c0;
        if (ncols <= 0) break;
        PanelTile<NC, KV, TW>(x, lx, sx, panel, i0, i1, c0, ncols < step ? ncols : step, y + p * kPanel, ldy);
      }
    }
  }
}

// Dispatches N rows (1..16) to a tile shape that keeps NC·KV accumulators in registers.
template <int NC, typename TW>
HWY_INLINE void RowsNC(const float* x, int64_t ldx, const TW* wp, int64_t in, int64_t out, int64_t p0, int64_t p1,
                       float* y, int64_t ldy, bool wide) {
  constexpr int kv_wide = NC <= 4 ? 4 : NC <= 8 ? 2 : 1;
  constexpr int kv_narrow = NC <= 4 ? 2 : 1;
  if (wide)
    PanelRows<NC, kv_wide, TW>(x, ldx, wp, in, out, p0, p1, y, ldy);
  else
    PanelRows<NC, kv_narrow, TW>(x, ldx, wp, in, out, p0, p1, y, ldy);
}

template <typename TW>
HWY_INLINE void GemvPanelsT(const float* x, int64_t ldx, int64_t N, const TW* wp, int64_t in, int64_t out,
                            int64_t p0, int64_t p1, float* y, int64_t ldy) {
  const hn::ScalableTag<float> d;
  // 32 vector registers on AVX-512 hold up to 16 accumulators plus operands; narrower targets
  // (16 registers) take at most 8 rows per pass.
  const bool wide = hn::Lanes(d) >= 16;
  const int64_t max_rows = wide ? 16 : 8;
  for (int64_t n = 0; n < N; n += max_rows) {
    const int64_t r = std::min<int64_t>(max_rows, N - n);
    const float* xs = x + n * ldx;
    float* ys = y + n * ldy;
    switch (r) {
#define MOSHI_ROWS_CASE(k) \
  case k: RowsNC<k, TW>(xs, ldx, wp, in, out, p0, p1, ys, ldy, wide); break;
      MOSHI_ROWS_CASE(1) MOSHI_ROWS_CASE(2) MOSHI_ROWS_CASE(3) MOSHI_ROWS_CASE(4) MOSHI_ROWS_CASE(5)
      MOSHI_ROWS_CASE(6) MOSHI_ROWS_CASE(7) MOSHI_ROWS_CASE(8) MOSHI_ROWS_CASE(9) MOSHI_ROWS_CASE(10)
      MOSHI_ROWS_CASE(11) MOSHI_ROWS_CASE(12) MOSHI_ROWS_CASE(13) MOSHI_ROWS_CASE(14) MOSHI_ROWS_CASE(15)
      MOSHI_ROWS_CASE(16)
#undef MOSHI_ROWS_CASE
      default: break;
    }
  }
}

void GemvPanels(const float* x, int64_t ldx, int64_t N, const float* wp, int64_t in, int64_t out, int64_t p0,
                int64_t p1, float* y, int64_t ldy) {
  GemvPanelsT(x, ldx, N, wp, in, out, p0, p1, y, ldy);
}
void GemvPanelsBf16(const float* x, int64_t ldx, int64_t N, const uint16_t* wp, int64_t in, int64_t out, int64_t p0,
                    int64_t p1, float* y, int64_t ldy) {
  GemvPanelsT(x, ldx, N, reinterpret_cast<const hwy::bfloat16_t*>(wp), in, out, p0, p1, y, ldy);
}

// scores[r] = scale · q·k_r for rows k_r = k + r·stride, r < rows (row length D).
void DotRows(const float* HWY_RESTRICT q, const float* HWY_RESTRICT k, int64_t stride, int64_t rows, int64_t D,
             float scale, float* HWY_RESTRICT scores) {
  const hn::ScalableTag<float> d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  for (int64_t r = 0; r < rows; ++r) {
    const float* kr = k + r * stride;
    auto acc = hn::Zero(d);
    int64_t i = 0;
    for (; i + L <= D; i += L) acc = hn::MulAdd(hn::LoadU(d, q + i), hn::LoadU(d, kr + i), acc);
    float s = hn::GetLane(hn::SumOfLanes(d, acc));
    for (; i < D; ++i) s += q[i] * kr[i];
    scores[r] = s * scale;
  }
}

// out[0:D] += Σ_r a[r] · v_r for rows v_r = v + r·stride.
void AxpyRows(const float* HWY_RESTRICT a, const float* HWY_RESTRICT v, int64_t stride, int64_t rows, int64_t D,
              float* HWY_RESTRICT out) {
  const hn::ScalableTag<float> d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  int64_t i = 0;
  for (; i + L <= D; i += L) {
    auto acc = hn::LoadU(d, out + i);
    for (int64_t r = 0; r < rows; ++r) acc = hn::MulAdd(hn::Set(d, a[r]), hn::LoadU(d, v + r * stride + i), acc);
    hn::StoreU(acc, d, out + i);
  }
  for (; i < D; ++i)
    for (int64_t r = 0; r < rows; ++r) out[i] += a[r] * v[r * stride + i];
}

void EluInplace(float* x, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  const auto zero = hn::Zero(d);
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    const auto v = hn::LoadU(d, x + i);
    const auto neg = hn::Expm1(d, hn::Min(v, zero));
    hn::StoreU(hn::IfThenElse(hn::Gt(v, zero), v, neg), d, x + i);
  }
  for (; i < n; ++i) x[i] = x[i] > 0.f ? x[i] : std::expm1(x[i]);
}

}  // namespace HWY_NAMESPACE
}  // namespace cpu
}  // namespace moshi
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace moshi {
namespace cpu {
HWY_EXPORT(GemvPanels);
HWY_EXPORT(GemvPanelsBf16);
HWY_EXPORT(EluInplace);
HWY_EXPORT(DotRows);
HWY_EXPORT(AxpyRows);

void dot_rows(const float* q, const float* k, int64_t stride, int64_t rows, int64_t D, float scale, float* scores) {
  HWY_DYNAMIC_DISPATCH(DotRows)(q, k, stride, rows, D, scale, scores);
}
void axpy_rows(const float* a, const float* v, int64_t stride, int64_t rows, int64_t D, float* out) {
  HWY_DYNAMIC_DISPATCH(AxpyRows)(a, v, stride, rows, D, out);
}

void gemv_panels(const float* x, int64_t ldx, int64_t N, const float* wp, int64_t in, int64_t out, int64_t p0,
                 int64_t p1, float* y, int64_t ldy) {
  HWY_DYNAMIC_DISPATCH(GemvPanels)(x, ldx, N, wp, in, out, p0, p1, y, ldy);
}
void gemv_panels_bf16(const float* x, int64_t ldx, int64_t N, const uint16_t* wp, int64_t in, int64_t out, int64_t p0,
                      int64_t p1, float* y, int64_t ldy) {
  HWY_DYNAMIC_DISPATCH(GemvPanelsBf16)(x, ldx, N, wp, in, out, p0, p1, y, ldy);
}
void elu_inplace(float* x, int64_t n) { HWY_DYNAMIC_DISPATCH(EluInplace)(x, n); }
}  // namespace cpu
}  // namespace moshi
#endif
