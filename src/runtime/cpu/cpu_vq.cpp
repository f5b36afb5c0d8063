// Nearest-codebook search and codebook lookups on the CPU.
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/op_profile.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/cpu/kernels.h"

namespace moshi {

// Codebooks are prepared like linear weights (packed [panels, D, kPanel]); `norms` gives bins.
void CpuBackend::vq_encode(Tensor& r, const Tensor& codebook, const Tensor& norms, Tensor& codes, int64_t col) {
  const int64_t bins = norms.numel(), D = codebook.dim(1), N = r.numel() / D, S = N ? codes.numel() / N : 1;
  MOSHI_CHECK(codes.numel() == N * S && col >= 0 && col < S, "vq_encode: ", codes.numel(), " codes for ", N,
              " rows, column ", col);
  OpTimer timer("vq_encode", 2.0 * N * bins * D);
  thread_local std::vector<float> dots;
  dots.resize(static_cast<size_t>(N * bins));
  cpu::matmul_packed(pool_, r.f32(), D, N, codebook.f32(), D, bins, dots.data(), bins);
  thread_local std::vector<float> row;
  row.resize(D);
  const float* cn = norms.f32();
  for (int64_t n = 0; n < N; ++n) {
    float* x = r.f32() + n * D;
    float xn = 0.f;
    for (int64_t d = 0; d < D; ++d) xn += x[d] * x[d];
    // The reference's distance: sqrt(max(-2·x·c + |x|² + |c|², 0)); ties go to the lowest index.
    int64_t best = 0;
    float best_d = INFINITY;
    for (int64_t j = 0; j < bins; ++j) {
      float d2 = -2.f * dots[n * bins + j] + xn + cn[j];
      const float dist = std::sqrt(d2 > 0.f ? d2 : 0.f);
      if (dist < best_d) {
        best_d = dist;
        best = j;
      }
    }
    codes.i64()[n * S + col] = best;
    cpu::packed_row(codebook.f32(), D, best, row.data());
    for (int64_t d = 0; d < D; ++d) x[d] -= row[d];
  }
}

void CpuBackend::vq_decode_add(Tensor& acc, const Tensor& codebook, const Tensor& norms, const Tensor& codes,
                               int64_t col) {
  const int64_t bins = norms.numel(), D = codebook.dim(1), N = D ? acc.numel() / D : 0, S = N ? codes.numel() / N : 1;
  MOSHI_CHECK(codes.numel() == N * S && col >= 0 && col < S, "vq_decode_add: ", codes.numel(), " codes for ", N,
              " rows, column ", col);
  thread_local std::vector<float> row;
  row.resize(D);
  for (int64_t n = 0; n < N; ++n) {
    const int64_t c = codes.i64()[n * S + col];
    MOSHI_CHECK(c >= 0 && c < bins, "code ", c, " is out of range [0, ", bins, ")");
    cpu::packed_row(codebook.f32(), D, c, row.data());
    float* a = acc.f32() + n * D;
    for (int64_t d = 0; d < D; ++d) a[d] += row[d];
  }
}

}  // namespace moshi
