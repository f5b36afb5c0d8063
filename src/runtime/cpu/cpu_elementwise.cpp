// Element-wise ops, norms and layout changes on the CPU.
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/op_profile.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/cpu/kernels.h"

namespace moshi {

void CpuBackend::elu(const Tensor& x, Tensor& y) {
  OpTimer timer("elu");
  MOSHI_CHECK(x.numel() == y.numel(), "elu: size mismatch");
  if (y.data() != x.data()) std::memcpy(y.data(), x.data(), x.nbytes());
  cpu::elu_inplace(y.f32(), y.numel());
}

void CpuBackend::gelu_erf(Tensor& x) {
  OpTimer timer("gelu_erf");
  float* p = x.f32();
  const int64_t n = x.numel();
  for (int64_t i = 0; i < n; ++i) p[i] = 0.5f * p[i] * (1.f + std::erf(p[i] * static_cast<float>(M_SQRT1_2)));
}

void CpuBackend::add(const Tensor& a, const Tensor& b, Tensor& y) {
  OpTimer timer("add");
  MOSHI_CHECK(a.numel() == b.numel() && a.numel() == y.numel(), "add: size mismatch ", shape_str(a.shape()), " + ",
              shape_str(b.shape()));
  const float *pa = a.f32(), *pb = b.f32();
  float* py = y.f32();
  const int64_t n = a.numel();
  for (int64_t i = 0; i < n; ++i) py[i] = pa[i] + pb[i];
}

void CpuBackend::add_scaled(Tensor& x, const Tensor& u, const Tensor* scale) {
  OpTimer timer("add_scaled");
  MOSHI_CHECK(x.numel() == u.numel(), "add_scaled: size mismatch");
  float* px = x.f32();
  const float* pu = u.f32();
  const int64_t n = x.numel();
  if (!scale) {
    for (int64_t i = 0; i < n; ++i) px[i] += pu[i];
    return;
  }
  const int64_t C = scale->numel();
  const float* ps = scale->f32();
  for (int64_t r = 0; r < n / C; ++r)
    for (int64_t c = 0; c < C; ++c) px[r * C + c] += ps[c] * pu[r * C + c];
}

void CpuBackend::transpose_ct(const Tensor& x, Tensor& y) {
  OpTimer timer("transpose");
  const int64_t B = x.dim(0), C = x.dim(1), T = x.dim(2);
  MOSHI_CHECK(y.numel() == x.numel(), "transpose: size mismatch");
  const float* px = x.f32();
  float* py = y.f32();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t t = 0; t < T; ++t) py[(b * T + t) * C + c] = px[(b * C + c) * T + t];
}

void CpuBackend::transpose_tc(const Tensor& x, Tensor& y) {
  const int64_t B = x.dim(0), T = x.dim(1), C = x.dim(2);
  MOSHI_CHECK(y.numel() == x.numel(), "transpose: size mismatch");
  const float* px = x.f32();
  float* py = y.f32();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t c = 0; c < C; ++c) py[(b * C + c) * T + t] = px[(b * T + t) * C + c];
}

void CpuBackend::layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor& y) {
  OpTimer timer("layer_norm");
  const int64_t C = w.numel(), N = x.numel() / C;
  const float *px = x.f32(), *pw = w.f32(), *pb = b.f32();
  float* py = y.f32();
  for (int64_t n = 0; n < N; ++n) {
    const float* r = px + n * C;
    double mean = 0, var = 0;
    for (int64_t c = 0; c < C; ++c) mean += r[c];
    mean /= C;
    for (int64_t c = 0; c < C; ++c) var += (r[c] - mean) * (r[c] - mean);
    var /= C;
    const float m = static_cast<float>(mean), inv = static_cast<float>(1.0 / std::sqrt(var + eps));
    for (int64_t c = 0; c < C; ++c) py[n * C + c] = (r[c] - m) * inv * pw[c] + pb[c];
  }
}

}  // namespace moshi
