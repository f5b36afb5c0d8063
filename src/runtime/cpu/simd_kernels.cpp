// Highway kernels compiled for several instruction sets and picked at run time.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "runtime/cpu/simd_kernels.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

#include "runtime/cpu/kernels.h"

HWY_BEFORE_NAMESPACE();
namespace moshi {
namespace cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// R rows of w against NC rows of x: R·NC dot products of length `in`, w streamed once.
template <int R, int NC>
HWY_INLINE void DotTile(const float* HWY_RESTRICT x, int64_t ldx, const float* HWY_RESTRICT w, int64_t in,
                        float* HWY_RESTRICT y, int64_t ldy) {
  const hn::ScalableTag<float> d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  using V = hn::Vec<decltype(d)>;
  V acc[R][NC];
  for (int r = 0; r < R; ++r)
    for (int n = 0; n < NC; ++n) acc[r][n] = hn::Zero(d);
  int64_t i = 0;
  for (; i + L <= in; i += L) {
    V xv[NC];
    for (int n = 0; n < NC; ++n) xv[n] = hn::LoadU(d, x + n * ldx + i);
    for (int r = 0; r < R; ++r) {
      const V wv = hn::LoadU(d, w + r * in + i);
      for (int n = 0; n < NC; ++n) acc[r][n] = hn::MulAdd(wv, xv[n], acc[r][n]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int n = 0; n < NC; ++n) {
      float s = hn::GetLane(hn::SumOfLanes(d, acc[r][n]));
      for (int64_t j = i; j < in; ++j) s += w[r * in + j] * x[n * ldx + j];
      y[n * ldy + r] = s;
    }
  }
}

template <int NC>
HWY_INLINE void GemvChunk(const float* x, int64_t ldx, const float* w, int64_t in, int64_t o0, int64_t o1,
                          float* y, int64_t ldy) {
  int64_t o = o0;
  for (; o + 4 <= o1; o += 4) DotTile<4, NC>(x, ldx, w + o * in, in, y + o, ldy);
  for (; o < o1; ++o) DotTile<1, NC>(x, ldx, w + o * in, in, y + o, ldy);
}

void GemvRows(const float* x, int64_t ldx, int64_t N, const float* w, int64_t in, int64_t o0, int64_t o1,
              float* y, int64_t ldy) {
  int64_t n = 0;
  for (; n + 4 <= N; n += 4) GemvChunk<4>(x + n * ldx, ldx, w, in, o0, o1, y + n * ldy, ldy);
  switch (N - n) {
    case 3: GemvChunk<3>(x + n * ldx, ldx, w, in, o0, o1, y + n * ldy, ldy); break;
    case 2: GemvChunk<2>(x + n * ldx, ldx, w, in, o0, o1, y + n * ldy, ldy); break;
    case 1: GemvChunk<1>(x + n * ldx, ldx, w, in, o0, o1, y + n * ldy, ldy); break;
    default: break;
  }
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
HWY_EXPORT(GemvRows);
HWY_EXPORT(EluInplace);

void gemv_rows(const float* x, int64_t ldx, int64_t N, const float* w, int64_t in, int64_t o0, int64_t o1,
               float* y, int64_t ldy) {
  HWY_DYNAMIC_DISPATCH(GemvRows)(x, ldx, N, w, in, o0, o1, y, ldy);
}
void elu_inplace(float* x, int64_t n) { HWY_DYNAMIC_DISPATCH(EluInplace)(x, n); }
}  // namespace cpu
}  // namespace moshi
#endif
