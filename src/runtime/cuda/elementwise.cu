// Element-wise ops, layout changes and sinusoidal positions on the GPU. The math is the CPU's,
// written with the same single-precision functions (expf, expm1f, erff, tanhf, cosf, sinf, not
// their fast approximations). Outputs may alias inputs (element i only reads element i).
#include <cmath>
#include <cstring>

#include "runtime/cuda/common.cuh"

namespace moshi {
namespace cuda {
namespace {

__global__ void act_kernel(const float* x, float* y, int64_t n, Act a) {
  pdl_trigger();
  MOSHI_GRID_STRIDE(i, n) y[i] = apply_act(x[i], a);
}

__global__ void gated_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t N, int64_t H, Act a) {
  pdl_trigger();
  MOSHI_GRID_STRIDE(i, N * H) {
    const int64_t n = i / H, h = i % H;
    y[i] = apply_act(x[n * 2 * H + h], a) * x[n * 2 * H + H + h];
  }
}

__global__ void add_kernel(const float* a, const float* b, float* y, int64_t n) {
  pdl_trigger();
  MOSHI_GRID_STRIDE(i, n) y[i] = a[i] + b[i];
}

__global__ void add_scaled_kernel(float* x, const float* u, const float* __restrict__ scale, int64_t n, int64_t C) {
  pdl_trigger();
  pdl_wait();
  MOSHI_GRID_STRIDE(i, n) x[i] += scale ? scale[i % C] * u[i] : u[i];
}

// Per batch b: in [rows, cols] -> out [cols, rows], through a padded 32x32 shared tile so that
// both the reads and the writes are coalesced.
__global__ void transpose_kernel(const float* __restrict__ in, float* __restrict__ out, int64_t rows, int64_t cols) {
  __shared__ float tile[32][33];
  const int64_t base = blockIdx.z * rows * cols;
  const int64_t c = blockIdx.x * 32 + threadIdx.x;
  for (int j = threadIdx.y; j < 32; j += blockDim.y) {
    const int64_t r = blockIdx.y * 32 + j;
    if (c < cols && r < rows) tile[j][threadIdx.x] = in[base + r * cols + c];
  }
  __syncthreads();
  const int64_t r = blockIdx.y * 32 + threadIdx.x;
  for (int j = threadIdx.y; j < 32; j += blockDim.y) {
    const int64_t oc = blockIdx.x * 32 + j;
    if (oc < cols && r < rows) out[base + oc * rows + r] = tile[threadIdx.x][j];
  }
}

// x[n, i] += scale·cos(p / div[i]), x[n, half + i] += scale·sin(p / div[i]).
__global__ void sin_embedding_kernel(float* __restrict__ x, const int64_t* __restrict__ pos,
                                     const float* __restrict__ div, int64_t N, int64_t C, int64_t half, float scale) {
  pdl_trigger();
  MOSHI_GRID_STRIDE(k, N * half) {
    const int64_t n = k / half, i = k % half;
    const float phase = static_cast<float>(pos[n]) / div[i];
    x[n * C + i] += scale * cosf(phase);
    x[n * C + half + i] += scale * sinf(phase);
  }
}

void transpose(Impl& im, const float* in, float* out, int64_t B, int64_t rows, int64_t cols, const char* op) {
  MOSHI_CHECK(B <= 65535 && (rows + 31) / 32 <= 65535, "cuda ", op, ": tensor too large");
  const dim3 grid(static_cast<unsigned>((cols + 31) / 32), static_cast<unsigned>((rows + 31) / 32),
                  static_cast<unsigned>(B));
  launch(im, op, transpose_kernel, grid, dim3(32, 8), 0, in, out, rows, cols);
}

}  // namespace
}  // namespace cuda

using cuda::f32_of;
using cuda::grid_for;
using cuda::launch;

void CudaBackend::elu(const Tensor& x, Tensor& y) {
  impl_->enter(__func__);
  MOSHI_CHECK(x.numel() == y.numel(), "elu: size mismatch");
  launch(*impl_, "elu", cuda::act_kernel, dim3(grid_for(*impl_, x.numel())), dim3(256), 0, f32_of(x, "elu", "input"),
         f32_of(y, "elu", "output"), x.numel(), Act::Elu);
}

void CudaBackend::activation(Tensor& x, Act act) {
  impl_->enter(__func__);
  if (act == Act::Identity) return;
  float* p = f32_of(x, "activation", "tensor");
  launch(*impl_, "activation", cuda::act_kernel, dim3(grid_for(*impl_, x.numel())), dim3(256), 0, p, p, x.numel(), act);
}

void CudaBackend::gated_activation(const Tensor& x, Act act, Tensor& y) {
  impl_->enter(__func__);
  const int64_t H = y.dim(-1), N = H ? y.numel() / H : 0;
  MOSHI_CHECK(x.numel() == 2 * N * H, "gated_activation: x ", shape_str(x.shape()), " is not twice y ",
              shape_str(y.shape()));
  launch(*impl_, "gated_activation", cuda::gated_kernel, dim3(grid_for(*impl_, N * H)), dim3(256), 0,
         f32_of(x, "gated_activation", "input"), f32_of(y, "gated_activation", "output"), N, H, act);
}

void CudaBackend::add(const Tensor& a, const Tensor& b, Tensor& y) {
  impl_->enter(__func__);
  MOSHI_CHECK(a.numel() == b.numel() && a.numel() == y.numel(), "add: size mismatch ", shape_str(a.shape()), " + ",
              shape_str(b.shape()));
  launch(*impl_, "add", cuda::add_kernel, dim3(grid_for(*impl_, a.numel())), dim3(256), 0, f32_of(a, "add", "a"),
         f32_of(b, "add", "b"), f32_of(y, "add", "output"), a.numel());
}

void CudaBackend::add_scaled(Tensor& x, const Tensor& u, const Tensor* scale) {
  impl_->enter(__func__);
  MOSHI_CHECK(x.numel() == u.numel(), "add_scaled: size mismatch");
  const int64_t C = scale ? scale->numel() : 1;
  MOSHI_CHECK(C > 0 && x.numel() % C == 0, "add_scaled: scale of ", C, " does not divide ", shape_str(x.shape()));
  cuda::launch_chain(*impl_, "add_scaled", cuda::add_scaled_kernel, dim3(grid_for(*impl_, x.numel())), dim3(256), 0,
                     f32_of(x, "add_scaled", "x"), f32_of(u, "add_scaled", "u"),
                     scale ? f32_of(*scale, "add_scaled", "scale") : nullptr, x.numel(), C);
}

void CudaBackend::transpose_ct(const Tensor& x, Tensor& y) {
  impl_->enter(__func__);
  MOSHI_CHECK(x.ndim() == 3 && y.numel() == x.numel(), "transpose: size mismatch");
  cuda::transpose(*impl_, f32_of(x, "transpose", "input"), f32_of(y, "transpose", "output"), x.dim(0), x.dim(1),
                  x.dim(2), "transpose");
}

void CudaBackend::transpose_tc(const Tensor& x, Tensor& y) {
  impl_->enter(__func__);
  MOSHI_CHECK(x.ndim() == 3 && y.numel() == x.numel(), "transpose: size mismatch");
  cuda::transpose(*impl_, f32_of(x, "transpose", "input"), f32_of(y, "transpose", "output"), x.dim(0), x.dim(1),
                  x.dim(2), "transpose");
}

void CudaBackend::sin_embedding_add(Tensor& x, const std::vector<int64_t>& pos, float max_period, float scale) {
  impl_->enter(__func__);
  const char* op = "sin_embedding_add";
  const int64_t N = static_cast<int64_t>(pos.size()), C = N ? x.numel() / N : 0, half = C / 2;
  MOSHI_CHECK(N > 0 && x.numel() == N * C, "sin_embedding_add: ", N, " positions for ", shape_str(x.shape()));
  if (half == 0) return;
  cuda::Impl& im = *impl_;
  // The divisors max_period^(i / (half - 1)) exactly as the CPU computes them (std::pow on floats).
  uint32_t bits;
  std::memcpy(&bits, &max_period, 4);
  const float* div = im.table(
      "sin:" + std::to_string(C) + ":" + std::to_string(bits),
      [&] {
        std::vector<float> d(static_cast<size_t>(half));
        for (int64_t i = 0; i < half; ++i)
          d[i] = std::pow(max_period, static_cast<float>(i) / static_cast<float>(half - 1));
        return d;
      },
      op);
  const int64_t* dpos = im.put_args({&pos}, op);
  launch(im, op, cuda::sin_embedding_kernel, dim3(grid_for(im, N * half)), dim3(256), 0, f32_of(x, op, "x"), dpos, div,
         N, C, half, scale);
}

}  // namespace moshi
