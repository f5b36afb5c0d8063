// Matrix products and convolutions on the CPU: linear layers, causal conv1d (im2col + matmul)
// and streaming transposed conv1d (matmul + overlap-add).
#include <cblas.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/op_profile.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/cpu/kernels.h"

namespace moshi {
namespace cpu {

namespace {

// Per-thread scratch that grows to the largest size seen and is then reused (no allocation in
// the steady state).
float* scratch(int slot, size_t n) {
  thread_local std::vector<float> bufs[3];
  auto& b = bufs[slot];
  if (b.size() < n) b.resize(n);
  return b.data();
}
}  // namespace

int64_t panels(int64_t out) { return (out + kPanel - 1) / kPanel; }

template <typename T>
static void pack_range(const T* w, int64_t out, int64_t in, int64_t ldw, T* dst, int64_t p0, int64_t p1) {
  if (p1 < 0) p1 = panels(out);
  std::fill(dst + p0 * in * kPanel, dst + p1 * in * kPanel, T{0});
  for (int64_t o = p0 * kPanel; o < std::min(out, p1 * kPanel); ++o) {
    T* d = dst + (o / kPanel) * in * kPanel + o % kPanel;
    const T* src = w + o * ldw;
    for (int64_t i = 0; i < in; ++i) d[i * kPanel] = src[i];
  }
}

void pack_panels(const float* w, int64_t out, int64_t in, int64_t ldw, float* dst, int64_t p0, int64_t p1) {
  pack_range(w, out, in, ldw, dst, p0, p1);
}

void pack_panels_bf16(const uint16_t* w, int64_t out, int64_t in, int64_t ldw, uint16_t* dst, int64_t p0,
                      int64_t p1) {
  pack_range(w, out, in, ldw, dst, p0, p1);
}

void packed_row(const float* wp, int64_t in, int64_t j, float* row) {
  const float* s = wp + (j / kPanel) * in * kPanel + j % kPanel;
  for (int64_t i = 0; i < in; ++i) row[i] = s[i * kPanel];
}

void matmul_packed(ThreadPool& pool, const float* x, int64_t ldx, int64_t N, const float* wp, int64_t in, int64_t out,
                   float* y, int64_t ldy) {
  if (N <= 0 || out <= 0) return;
  const int64_t P = panels(out);
  const double work = static_cast<double>(N) * in * out;
  int parts = work < 2e5 ? 1 : pool.size();
  if (use_panels(N, in)) {
    parts = static_cast<int>(std::min<int64_t>(parts, P));
    pool.parallel_for(parts, [&](int i) {
      int64_t p0, p1;
      split_range(P, parts, i, 1, &p0, &p1);
      if (p1 > p0) gemv_panels(x, ldx, N, wp, in, out, p0, p1, y, ldy);
    });
    return;
  }
  // Each panel is a row-major [in, kPanel] matrix: y[:, panel columns] = x · panel.
  auto panel_gemm = [&](int64_t p, int64_t n0, int64_t n1) {
    const int64_t cols = std::min(kPanel, out - p * kPanel);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(n1 - n0), static_cast<int>(cols),
                static_cast<int>(in), 1.f, x + n0 * ldx, static_cast<int>(ldx), wp + p * in * kPanel,
                static_cast<int>(kPanel), 0.f, y + n0 * ldy + p * kPanel, static_cast<int>(ldy));
  };
  if (P >= parts) {
    pool.parallel_for(parts, [&](int i) {
      int64_t p0, p1;
      split_range(P, parts, i, 1, &p0, &p1);
      for (int64_t p = p0; p < p1; ++p) panel_gemm(p, 0, N);
    });
  } else {
    pool.parallel_for(parts, [&](int i) {
      int64_t n0, n1;
      split_range(N, parts, i, 8, &n0, &n1);
      if (n1 > n0)
        for (int64_t p = 0; p < P; ++p) panel_gemm(p, n0, n1);
    });
  }
}

void matmul_packed_bf16(ThreadPool& pool, const float* x, int64_t ldx, int64_t N, const uint16_t* wp, int64_t in,
                        int64_t out, float* y, int64_t ldy) {
  if (N <= 0 || out <= 0) return;
  const int64_t P = panels(out);
  const double work = static_cast<double>(N) * in * out;
  int parts = static_cast<int>(std::min<int64_t>(work < 2e5 ? 1 : pool.size(), P));
  if (use_panels(N, in)) {
    pool.parallel_for(parts, [&](int i) {
      int64_t p0, p1;
      split_range(P, parts, i, 1, &p0, &p1);
      if (p1 > p0) gemv_panels_bf16(x, ldx, N, wp, in, out, p0, p1, y, ldy);
    });
    return;
  }
  // Many rows: widen one panel at a time into f32 scratch, then sgemm on it.
  pool.parallel_for(parts, [&](int i) {
    int64_t p0, p1;
    split_range(P, parts, i, 1, &p0, &p1);
    thread_local std::vector<float> panel;
    panel.resize(static_cast<size_t>(in * kPanel));
    for (int64_t p = p0; p < p1; ++p) {
      const uint16_t* src = wp + p * in * kPanel;
      for (int64_t j = 0; j < in * kPanel; ++j) panel[j] = bf16_to_f32(src[j]);
      const int64_t cols = std::min(kPanel, out - p * kPanel);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(N), static_cast<int>(cols),
                  static_cast<int>(in), 1.f, x, static_cast<int>(ldx), panel.data(), static_cast<int>(kPanel), 0.f,
                  y + p * kPanel, static_cast<int>(ldy));
    }
  });
}

}  // namespace cpu

using cpu::matmul_packed;

void CpuBackend::linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  // w is packed: [panels, in, kPanel]; `out` comes from y.
  const int64_t in = w.dim(1), out = y.dim(-1), N = x.numel() / in;
  OpTimer timer(cpu::use_panels(N, in) ? "linear(gemv)" : "linear(gemm)", 2.0 * N * in * out);
  MOSHI_CHECK(w.ndim() == 3 && x.numel() == N * in && y.numel() == N * out && cpu::panels(out) == w.dim(0),
              "linear: shapes ", shape_str(x.shape()), " x ", shape_str(w.shape()), " -> ", shape_str(y.shape()));
  if (w.dtype() == DType::BF16)
    cpu::matmul_packed_bf16(pool_, x.f32(), in, N, w.ptr<uint16_t>(), in, out, y.f32(), out);
  else
    matmul_packed(pool_, x.f32(), in, N, w.f32(), in, out, y.f32(), out);
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
  OpTimer timer(cpu::use_panels(N, CK) ? "conv1d(gemv)" : "conv1d(gemm)", 2.0 * N * CK * cout);
  if (cpu::use_panels(N, CK)) {
    // Few output steps: one im2col row per step, weights streamed once by the SIMD kernel.
    float* col = cpu::scratch(0, static_cast<size_t>(N * CK));  // [N, Cin·K]
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
    matmul_packed(pool_, col, CK, N, w.f32(), CK, cout, yt, cout);
    for (int64_t b = 0; b < B; ++b)
      for (int co = 0; co < cout; ++co) {
        const float bb = pb ? pb[co] : 0.f;
        float* dst = py + (b * cout + co) * Tout;
        const float* s = yt + b * Tout * cout + co;
        for (int64_t t = 0; t < Tout; ++t) dst[t] = s[t * cout] + bb;
      }
    return;
  }
  // Many output steps: col [Cin·K, Tout] built from contiguous runs of concat(prev, x), then per
  // weight panel y[panel rows, :] = panelᵀ · col, written straight into y's [Cout, Tout] layout.
  const int64_t TP = P + T;
  float* xc = cpu::scratch(0, static_cast<size_t>(cin * TP));
  float* col = cpu::scratch(1, static_cast<size_t>(CK * Tout));
  const int64_t P_panels = cpu::panels(cout);
  for (int64_t b = 0; b < B; ++b) {
    for (int ci = 0; ci < cin; ++ci) {
      if (P) std::memcpy(xc + ci * TP, pp + (b * cin + ci) * P, P * sizeof(float));
      std::memcpy(xc + ci * TP + P, px + (b * cin + ci) * T, T * sizeof(float));
    }
    for (int ci = 0; ci < cin; ++ci)
      for (int k = 0; k < kernel; ++k) {
        const float* src = xc + ci * TP + k * dilation;
        float* dst = col + (static_cast<int64_t>(ci) * kernel + k) * Tout;
        if (stride == 1) {
          std::memcpy(dst, src, Tout * sizeof(float));
        } else {
          for (int64_t t = 0; t < Tout; ++t) dst[t] = src[t * stride];
        }
      }
    float* yb = py + b * cout * Tout;
    const int parts = pool_.size();
    auto run = [&](int64_t p, int64_t t0, int64_t t1) {
      const int64_t rows = std::min(cpu::kPanel, cout - p * cpu::kPanel);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(rows), static_cast<int>(t1 - t0),
                  static_cast<int>(CK), 1.f, w.f32() + p * CK * cpu::kPanel, static_cast<int>(cpu::kPanel),
                  col + t0, static_cast<int>(Tout), 0.f, yb + p * cpu::kPanel * Tout + t0, static_cast<int>(Tout));
    };
    if (P_panels >= parts) {
      pool_.parallel_for(parts, [&](int i) {
        int64_t p0, p1;
        split_range(P_panels, parts, i, 1, &p0, &p1);
        for (int64_t p = p0; p < p1; ++p) run(p, 0, Tout);
      });
    } else {
      pool_.parallel_for(parts, [&](int i) {
        int64_t t0, t1;
        split_range(Tout, parts, i, 16, &t0, &t1);
        if (t1 > t0)
          for (int64_t p = 0; p < P_panels; ++p) run(p, t0, t1);
      });
    }
    if (pb)
      for (int co = 0; co < cout; ++co) {
        float* r = yb + co * Tout;
        for (int64_t t = 0; t < Tout; ++t) r[t] += pb[co];
      }
  }
}

void CpuBackend::conv_history_update(Tensor& prev, const Tensor& x) {
  if (prev.numel() == 0) return;
  OpTimer timer("conv_history");
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
  OpTimer timer(cpu::use_panels(B * T, cin) ? "conv_transpose1d(gemv)" : "conv_transpose1d(gemm)",
                2.0 * B * T * cin * cout * kernel / groups);
  const float* px = x.f32();
  const float* pb = bias ? bias->f32() : nullptr;
  float* acc = cpu::scratch(2, static_cast<size_t>(cout * full));
  const int64_t CK = static_cast<int64_t>(cout) * kernel;
  float* zt = nullptr;
  if (groups == 1) {
    // Zt[B·T, Cout·K] = xᵀ · Wtᵀ with the prepared (packed) weight Wt [Cout·K, Cin].
    float* xt = cpu::scratch(0, static_cast<size_t>(B * T * cin));
    zt = cpu::scratch(1, static_cast<size_t>(B * T * CK));
    for (int64_t b = 0; b < B; ++b)
      for (int ci = 0; ci < cin; ++ci)
        for (int64_t t = 0; t < T; ++t) xt[(b * T + t) * cin + ci] = px[(b * cin + ci) * T + t];
    matmul_packed(pool_, xt, cin, B * T, w.f32(), cin, CK, zt, CK);
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
