// Matrix products and convolutions on the CPU: linear layers, causal conv1d (im2col + matmul)
// and streaming transposed conv1d (matmul + overlap-add).
#include <cblas.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/cpu/kernels.h"

namespace moshi {
namespace cpu {

namespace {
constexpr int64_t kSmallRows = 8;  // up to this many rows, stream the weights with the SIMD kernel

// Per-thread scratch that grows to the largest size seen and is then reused (no allocation in
// the steady state).
float* scratch(int slot, size_t n) {
  thread_local std::vector<float> bufs[3];
  auto& b = bufs[slot];
  if (b.size() < n) b.resize(n);
  return b.data();
}
}  // namespace

void matmul_nt(ThreadPool& pool, const float* x, int64_t ldx, int64_t N, const float* w, int64_t in, int64_t out,
               float* y, int64_t ldy) {
  if (N <= 0 || out <= 0) return;
  const double work = static_cast<double>(N) * in * out;
  int parts = work < 2e5 ? 1 : pool.size();
  if (N <= kSmallRows) {
    parts = std::min<int64_t>(parts, std::max<int64_t>(1, out / 16));
    pool.parallel_for(parts, [&](int i) {
      int64_t o0, o1;
      split_range(out, parts, i, 16, &o0, &o1);
      if (o1 > o0) gemv_rows(x, ldx, N, w, in, o0, o1, y, ldy);
    });
    return;
  }
  const bool split_out = out >= N;
  pool.parallel_for(parts, [&](int i) {
    int64_t b, e;
    if (split_out) {
      split_range(out, parts, i, 16, &b, &e);
      if (e > b)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, e - b, in, 1.f, x, ldx, w + b * in, in, 0.f, y + b,
                    ldy);
    } else {
      split_range(N, parts, i, 8, &b, &e);
      if (e > b)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, e - b, out, in, 1.f, x + b * ldx, ldx, w, in, 0.f,
                    y + b * ldy, ldy);
    }
  });
}

}  // namespace cpu

using cpu::matmul_nt;

void CpuBackend::linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  const int64_t in = w.dim(1), out = w.dim(0), N = x.numel() / in;
  MOSHI_CHECK(x.numel() == N * in && y.numel() == N * out, "linear: shapes ", shape_str(x.shape()), " x ",
              shape_str(w.shape()), " -> ", shape_str(y.shape()));
  matmul_nt(pool_, x.f32(), in, N, w.f32(), in, out, y.f32(), out);
  if (bias) {
    float* py = y.f32();
    const float* pb = bias->f32();
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = 0; o < out; ++o) py[n * out + o] += pb[o];
  }
}

void CpuBackend::conv1d(const Tensor& prev, const Tensor& x, const Tensor& w, const Tensor* bias, int cin, int cout,
                        int kernel, int stride, int dilation, int groups, Tensor& y) {
  const int64_t B = x.dim(0), T = x.dim(2), P = prev.numel() ? prev.dim(2) : 0, Tout = T / stride;
  MOSHI_CHECK(x.dim(1) == cin && T % stride == 0 && P == (kernel - 1) * dilation + 1 - stride && y.dim(0) == B &&
                  y.dim(1) == cout && y.dim(2) == Tout,
              "conv1d: bad shapes x ", shape_str(x.shape()), " prev ", shape_str(prev.shape()), " y ",
              shape_str(y.shape()));
  const float* px = x.f32();
  const float* pp = P ? prev.f32() : nullptr;
  // x' = concat(prev, x) along time, read without materialising it.
  auto src = [&](int64_t b, int64_t c, int64_t u) -> float {
    return u < P ? pp[(b * cin + c) * P + u] : px[(b * cin + c) * T + (u - P)];
  };
  float* py = y.f32();
  const float* pb = bias ? bias->f32() : nullptr;
  if (groups != 1) {
    const int cig = cin / groups, cog = cout / groups;
    const float* pw = w.f32();
    for (int64_t b = 0; b < B; ++b)
      for (int co = 0; co < cout; ++co) {
        const int g = co / cog;
        for (int64_t t = 0; t < Tout; ++t) {
          float s = pb ? pb[co] : 0.f;
          for (int ci = 0; ci < cig; ++ci)
            for (int k = 0; k < kernel; ++k)
              s += pw[(co * cig + ci) * kernel + k] * src(b, g * cig + ci, t * stride + k * dilation);
          py[(b * cout + co) * Tout + t] = s;
        }
      }
    return;
  }
  const int64_t CK = static_cast<int64_t>(cin) * kernel, N = B * Tout;
  float* col = cpu::scratch(0, static_cast<size_t>(N * CK));  // [N, Cin·K]: one row per output step
  float* yt = cpu::scratch(1, static_cast<size_t>(N * cout));  // [N, Cout]
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < Tout; ++t) {
      float* row = col + (b * Tout + t) * CK;
      const int64_t u0 = t * stride;
      for (int ci = 0; ci < cin; ++ci) {
        const float* hp = pp ? pp + (b * cin + ci) * P : nullptr;
        const float* xp = px + (b * cin + ci) * T;
        for (int k = 0; k < kernel; ++k) {
          const int64_t u = u0 + k * dilation;
          row[ci * kernel + k] = u < P ? hp[u] : xp[u - P];
        }
      }
    }
  matmul_nt(pool_, col, CK, N, w.f32(), CK, cout, yt, cout);
  for (int64_t b = 0; b < B; ++b)
    for (int co = 0; co < cout; ++co) {
      const float bb = pb ? pb[co] : 0.f;
      float* dst = py + (b * cout + co) * Tout;
      const float* s = yt + b * Tout * cout + co;
      for (int64_t t = 0; t < Tout; ++t) dst[t] = s[t * cout] + bb;
    }
}

void CpuBackend::conv_history_update(Tensor& prev, const Tensor& x) {
  if (prev.numel() == 0) return;
  const int64_t B = x.dim(0), C = x.dim(1), T = x.dim(2), P = prev.dim(2);
  float* pp = prev.f32();
  const float* px = x.f32();
  for (int64_t bc = 0; bc < B * C; ++bc) {
    float* h = pp + bc * P;
    const float* s = px + bc * T;
    if (T >= P) {
      std::memcpy(h, s + (T - P), P * sizeof(float));
    } else {
      std::memmove(h, h + T, (P - T) * sizeof(float));
      std::memcpy(h + (P - T), s, T * sizeof(float));
    }
  }
}

void CpuBackend::conv_history_replicate(Tensor& prev, const Tensor& x, const std::vector<uint8_t>& first) {
  if (prev.numel() == 0) return;
  const int64_t B = x.dim(0), C = x.dim(1), T = x.dim(2), P = prev.dim(2);
  for (int64_t b = 0; b < B; ++b) {
    if (!first[b]) continue;
    for (int64_t c = 0; c < C; ++c) std::fill_n(prev.f32() + (b * C + c) * P, P, x.f32()[(b * C + c) * T]);
  }
}

void CpuBackend::conv_transpose1d(const Tensor& x, const Tensor& w, const Tensor* bias, int cin, int cout, int kernel,
                                  int stride, int groups, Tensor& partial, Tensor& y) {
  const int64_t B = x.dim(0), T = x.dim(2), tail = kernel - stride, full = (T - 1) * stride + kernel;
  MOSHI_CHECK(x.dim(1) == cin && kernel >= stride && y.dim(0) == B && y.dim(1) == cout && y.dim(2) == T * stride &&
                  partial.dim(2) == tail,
              "conv_transpose1d: bad shapes x ", shape_str(x.shape()), " y ", shape_str(y.shape()));
  const float* px = x.f32();
  const float* pb = bias ? bias->f32() : nullptr;
  float* acc = cpu::scratch(2, static_cast<size_t>(cout * full));
  const int64_t CK = static_cast<int64_t>(cout) * kernel;
  float* zt = nullptr;
  if (groups == 1) {
    // Zt[B·T, Cout·K] = xᵀ · Wtᵀ with the prepared weight Wt [Cout·K, Cin].
    float* xt = cpu::scratch(0, static_cast<size_t>(B * T * cin));
    zt = cpu::scratch(1, static_cast<size_t>(B * T * CK));
    for (int64_t b = 0; b < B; ++b)
      for (int ci = 0; ci < cin; ++ci)
        for (int64_t t = 0; t < T; ++t) xt[(b * T + t) * cin + ci] = px[(b * cin + ci) * T + t];
    matmul_nt(pool_, xt, cin, B * T, w.f32(), cin, CK, zt, CK);
  }
  for (int64_t b = 0; b < B; ++b) {
    std::fill_n(acc, cout * full, 0.f);
    if (groups == 1) {
      for (int64_t t = 0; t < T; ++t) {
        const float* z = zt + (b * T + t) * CK;
        for (int co = 0; co < cout; ++co) {
          float* a = acc + co * full + t * stride;
          const float* zz = z + co * kernel;
          for (int j = 0; j < kernel; ++j) a[j] += zz[j];
        }
      }
    } else {
      const int cig = cin / groups, cog = cout / groups;
      const float* pw = w.f32();  // [Cin, Cout/groups, K]
      for (int ci = 0; ci < cin; ++ci) {
        const int g = ci / cig;
        for (int col = 0; col < cog; ++col) {
          const int co = g * cog + col;
          const float* wk = pw + (ci * cog + col) * kernel;
          for (int64_t t = 0; t < T; ++t) {
            const float v = px[(b * cin + ci) * T + t];
            float* a = acc + co * full + t * stride;
            for (int j = 0; j < kernel; ++j) a[j] += v * wk[j];
          }
        }
      }
    }
    float* part = partial.f32() + b * cout * tail;
    float* py = y.f32() + b * cout * T * stride;
    for (int co = 0; co < cout; ++co) {
      float* a = acc + co * full;
      for (int64_t j = 0; j < tail; ++j) a[j] += part[co * tail + j];
      const float bb = pb ? pb[co] : 0.f;
      for (int64_t j = 0; j < T * stride; ++j) py[co * T * stride + j] = a[j] + bb;
      for (int64_t j = 0; j < tail; ++j) part[co * tail + j] = a[T * stride + j];
    }
  }
}

}  // namespace moshi
