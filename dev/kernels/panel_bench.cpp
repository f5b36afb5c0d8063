// Kernel lab: the packed-panel kernel (gemv_panels) against per-panel sgemm on Mimi's shapes.
// Build: g++ -O3 -std=c++20 -Isrc -Iinclude dev/kernels/panel_bench.cpp build/libmoshi.a -lhwy -lopenblas -pthread
#include <cblas.h>

#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <vector>

#include "runtime/cpu/kernels.h"


int main() {
  struct S { long N, in, out; } shapes[] = {{2, 512, 1536}, {2, 8192, 1024}, {16, 3072, 512}, {16, 1536, 256},
                                           {16, 512, 1024}, {8, 3072, 512}, {4, 3072, 512}, {16, 256, 512}};
  for (auto s : shapes) {
    const long P = moshi::cpu::panels(s.out), copies = 8;
    std::vector<float> w(s.out * s.in), x(s.N * s.in, 0.5f), y(s.N * s.out);
    for (size_t i = 0; i < w.size(); ++i) w[i] = (i % 97) * 0.01f;
    // The kernel's panel loads need 64-byte alignment, like the engine's tensors.
    const size_t nwp = copies * P * s.in * moshi::cpu::kPanel;
    float* wpp = static_cast<float*>(std::aligned_alloc(64, nwp * 4));
    struct { float* p; float* data() { return p; } } wp{wpp};
    for (int c = 0; c < copies; ++c) moshi::cpu::pack_panels(w.data(), s.out, s.in, s.in, wp.data() + c * P * s.in * 64);
    const long reps = std::max(4L, (long)(1e9 / (s.out * s.in * 4)));
    double best[2] = {1e9, 1e9};
    for (int v = 0; v < 2; ++v) {
      auto t0 = std::chrono::steady_clock::now();
      for (long r = 0; r < reps; ++r) {
        const float* ww = wp.data() + (r % copies) * P * s.in * 64;
        if (v == 0)
          moshi::cpu::gemv_panels(x.data(), s.in, s.N, ww, s.in, s.out, 0, P, y.data(), s.out);
        else
          for (long p = 0; p < P; ++p)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s.N, std::min(64L, s.out - p * 64), s.in, 1.f,
                        x.data(), s.in, ww + p * s.in * 64, 64, 0.f, y.data() + p * 64, s.out);
      }
      best[v] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
    }
    std::printf("N %2ld in %5ld out %5ld: panels %.3f ms (%.1f GFLOP/s, %.1f GB/s)  sgemm %.3f ms (%.1f GFLOP/s)\n", s.N,
                s.in, s.out, best[0] * 1e3, 2.0 * s.N * s.in * s.out / best[0] / 1e9, 4.0 * s.in * s.out / best[0] / 1e9,
                best[1] * 1e3, 2.0 * s.N * s.in * s.out / best[1] / 1e9);
  }
}
