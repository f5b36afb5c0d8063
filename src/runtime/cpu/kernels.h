// CPU compute kernels shared by the CPU backend's ops (plain pointers, no tensors).
#pragma once
#include <cstdint>

namespace moshi {
class ThreadPool;
namespace cpu {

// y[n, o] = Σ_i x[n, i] · w[o, i] for n < N, o < out (x row stride ldx, w rows contiguous of
// length `in`, y row stride ldy). Uses sgemm for many rows and a bandwidth-bound SIMD kernel for
// few rows; spread over the pool.
void matmul_nt(ThreadPool& pool, const float* x, int64_t ldx, int64_t N, const float* w, int64_t in,
               int64_t out, float* y, int64_t ldy);

// SIMD kernels (Highway, dispatched at run time to the best instruction set).
void gemv_rows(const float* x, int64_t ldx, int64_t N, const float* w, int64_t in, int64_t o0, int64_t o1,
               float* y, int64_t ldy);
void elu_inplace(float* x, int64_t n);

}  // namespace cpu
}  // namespace moshi
