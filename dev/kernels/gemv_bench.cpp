// Kernel lab: bandwidth of the few-row matmul kernel on Mimi's memory-bound shapes.
// Build: g++ -O3 -std=c++20 -Isrc -Iinclude dev/kernels/gemv_bench.cpp build/libmoshi.a -lhwy -lopenblas -pthread
#include <chrono>
#include <cstdio>
#include <vector>

#include "runtime/cpu/kernels.h"

int main() {
  struct S { long out, in; int N; } shapes[] = {{1024, 8192, 2}, {1536, 512, 2}, {2048, 512, 2}, {512, 2048, 2},
                                               {8192, 1024, 2}, {2048, 256, 1}};
  for (auto s : shapes) {
    const long reps = std::max(1L, (long)(2e9 / (s.out * s.in * 4)));
    std::vector<float> w(s.out * s.in * 8), x(s.N * s.in, 0.5f), y(s.N * s.out);  // 8 copies: defeat caches
    for (size_t i = 0; i < w.size(); ++i) w[i] = (i % 97) * 0.01f;
    auto t0 = std::chrono::steady_clock::now();
    for (long r = 0; r < reps; ++r)
      moshi::cpu::gemv_rows(x.data(), s.in, s.N, w.data() + (r % 8) * s.out * s.in, s.in, 0, s.out, y.data(), s.out);
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
    std::printf("out %5ld in %5ld N %d: %.3f ms  %.1f GB/s\n", s.out, s.in, s.N, dt * 1e3, s.out * s.in * 4 / dt / 1e9);
  }
}
