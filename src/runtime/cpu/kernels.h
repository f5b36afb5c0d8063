// CPU compute kernels shared by the CPU backend's ops (plain pointers, no tensors).
#pragma once
#include <cstdint>

namespace moshi {
class ThreadPool;
namespace cpu {

// Weights of matrix products are stored in panels of kPanel output rows: a weight [out, in]
// becomes [ceil(out / kPanel), in, kPanel] (zero-padded), so that one panel is one sequential
// stream whose kPanel outputs accumulate in vector registers (no horizontal sums), and each
// panel is also a plain [in, kPanel] row-major matrix for sgemm.
constexpr int64_t kPanel = 64;
int64_t panels(int64_t out);
// Packs w [out, in] (row stride ldw) into panels; `dst` holds panels(out)·in·kPanel values.
// Only panels [p0, p1) are written (p1 < 0: all), so packing can be split across threads.
void pack_panels(const float* w, int64_t out, int64_t in, int64_t ldw, float* dst, int64_t p0 = 0, int64_t p1 = -1);
// The same for bf16 weights, from bf16 [out, in].
void pack_panels_bf16(const uint16_t* w, int64_t out, int64_t in, int64_t ldw, uint16_t* dst, int64_t p0 = 0,
                      int64_t p1 = -1);
// Row j of a packed weight, gathered into row[in].
void packed_row(const float* wp, int64_t in, int64_t j, float* row);

// y[n, o] = Σ_i x[n, i] · w[o, i] for n < N, o < out, with w packed (x row stride ldx, y row
// stride ldy). Few rows stream the weights through a SIMD kernel; many rows go to sgemm per
// panel; spread over the pool.
void matmul_packed(ThreadPool& pool, const float* x, int64_t ldx, int64_t N, const float* wp, int64_t in,
                   int64_t out, float* y, int64_t ldy);
// The same with bf16 panels (widened to f32 in the kernel; many rows widen one panel at a time).
void matmul_packed_bf16(ThreadPool& pool, const float* x, int64_t ldx, int64_t N, const uint16_t* wp, int64_t in,
                        int64_t out, float* y, int64_t ldy);

// SIMD kernels (Highway, dispatched at run time to the best instruction set).
// Whether a product of N rows of length `in` runs faster streaming the packed weights once
// (gemv_panels) than through sgemm: always for few rows, for up to 16 rows when rows are long
// (measured on Zen 4 with dev/kernels/panel_bench.cpp).
inline bool use_panels(int64_t N, int64_t in) { return N <= 8 || (N <= 16 && in >= 1024); }
// Panels [p0, p1) of a packed weight against N rows of x (any N; one pass per 16 rows).
void gemv_panels(const float* x, int64_t ldx, int64_t N, const float* wp, int64_t in, int64_t out, int64_t p0,
                 int64_t p1, float* y, int64_t ldy);
void gemv_panels_bf16(const float* x, int64_t ldx, int64_t N, const uint16_t* wp, int64_t in, int64_t out, int64_t p0,
                      int64_t p1, float* y, int64_t ldy);
void elu_inplace(float* x, int64_t n);
// scores[r] = scale · q·k_r, k_r = k + r·stride (D floats each).
void dot_rows(const float* q, const float* k, int64_t stride, int64_t rows, int64_t D, float scale, float* scores);
// out[0:D] += Σ_r a[r] · v_r, v_r = v + r·stride.
void axpy_rows(const float* a, const float* v, int64_t stride, int64_t rows, int64_t D, float* out);

}  // namespace cpu
}  // namespace moshi
