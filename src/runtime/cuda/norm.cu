// LayerNorm and RMSNorm over the last dimension: one block per row, f32 statistics summed per
// thread then across the block (a tree, so rounding grows like log C rather than C).
#include "runtime/cuda/common.cuh"

namespace moshi {
namespace cuda {
namespace {

// Threads per row: enough to cover C in a few strides, at most 1024.
int norm_threads(int64_t C) {
  int t = 32;
  while (t < 1024 && t * 4 < C) t *= 2;
  return t;
}

// x and y may be the same tensor: each thread reads its elements before writing them.
__global__ void layer_norm_kernel(const float* x, const float* __restrict__ w, const float* __restrict__ b, float eps,
                                  float* y, int64_t C) {
  pdl_trigger();
  __shared__ float red[32];
  const float* r = x + blockIdx.x * C;
  float s = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += r[c];
  const float mean = block_sum(s, red) / static_cast<float>(C);
  float v = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const float d = r[c] - mean;
    v += d * d;
  }
  const float var = block_sum(v, red) / static_cast<float>(C);
  const float inv = 1.f / sqrtf(var + eps);
  float* o = y + blockIdx.x * C;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) o[c] = (r[c] - mean) * inv * w[c] + b[c];
}

__global__ void rms_norm_kernel(const float* x, const float* __restrict__ alpha, float eps, float* y, int64_t C) {
  pdl_trigger();
  pdl_wait();
  __shared__ float red[32];
  const float* r = x + blockIdx.x * C;
  float s = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += r[c] * r[c];
  const float inv = 1.f / sqrtf(block_sum(s, red) / static_cast<float>(C) + eps);
  float* o = y + blockIdx.x * C;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) o[c] = r[c] * (alpha[c] * inv);
}

// This thread's share of one row: r += scale ⊙ u (as add_scaled_kernel), returning the sum of
// the new values (SQUARES: of their squares) over the elements it touched.
template <bool SQUARES>
__device__ __forceinline__ float add_residual_row(float* r, const float* u, const float* __restrict__ scale,
                                                  int64_t C) {
  float s = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const float v = r[c] + (scale ? scale[c] * u[c] : u[c]);
    r[c] = v;
    s += SQUARES ? v * v : v;
  }
  return s;
}

// x += scale ⊙ u (scale may be null), then y = rms_norm(x): the sum and the statistics as in
// add_scaled_kernel and rms_norm_kernel, so the result is the same as the two ops'.
__global__ void add_rms_norm_kernel(float* x, const float* u, const float* __restrict__ scale,
                                    const float* __restrict__ alpha, float eps, float* y, int64_t C) {
  pdl_trigger();
  __shared__ float red[32];
  float* r = x + blockIdx.x * C;
  const float s = add_residual_row<true>(r, u + blockIdx.x * C, scale, C);
  const float inv = 1.f / sqrtf(block_sum(s, red) / static_cast<float>(C) + eps);
  float* o = y + blockIdx.x * C;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) o[c] = r[c] * (alpha[c] * inv);
}

// add_rms_norm_kernel (LAYER: add_layer_norm_kernel) for rows of at most kHeld · blockDim.x
// values: each thread keeps its values (and its weights, fetched before waiting for the previous
// kernel) in registers, so the row is read once. Same sums in the same order as the row kernels.
// With u null there is no add (x is left as it is): rms_norm_kernel / layer_norm_kernel.
constexpr int kHeld = 4;
template <bool LAYER>
__global__ void add_norm_held_kernel(float* x, const float* u, const float* __restrict__ scale,
                                     const float* __restrict__ w, const float* __restrict__ b, float eps, float* y,
                                     int64_t C) {
  pdl_trigger();
  __shared__ float red[32];
  float a[kHeld], bb[kHeld], sc[kHeld], v[kHeld];
#pragma unroll
  for (int k = 0; k < kHeld; ++k) {
    const int64_t c = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
    a[k] = c < C ? w[c] : 0.f;
    bb[k] = LAYER && c < C ? b[c] : 0.f;
    sc[k] = c < C && scale ? scale[c] : 1.f;
  }
  pdl_wait();
  float* r = x + blockIdx.x * C;
  const float* ur = u ? u + blockIdx.x * C : nullptr;
  float s = 0.f;
#pragma unroll
  for (int k = 0; k < kHeld; ++k) {
    const int64_t c = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
    if (c < C) {
      if (u) {
        v[k] = r[c] + (scale ? sc[k] * ur[c] : ur[c]);
        r[c] = v[k];
      } else {
        v[k] = r[c];
      }
      s += LAYER ? v[k] : v[k] * v[k];
    }
  }
  float mean = 0.f, inv;
  if (LAYER) {
    mean = block_sum(s, red) / static_cast<float>(C);
    float var = 0.f;
#pragma unroll
    for (int k = 0; k < kHeld; ++k) {
      const int64_t c = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
      if (c < C) var += (v[k] - mean) * (v[k] - mean);
    }
    inv = 1.f / sqrtf(block_sum(var, red) / static_cast<float>(C) + eps);
  } else {
    inv = 1.f / sqrtf(block_sum(s, red) / static_cast<float>(C) + eps);
  }
  float* o = y + blockIdx.x * C;
#pragma unroll
  for (int k = 0; k < kHeld; ++k) {
    const int64_t c = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
    if (c < C) o[c] = LAYER ? (v[k] - mean) * inv * a[k] + bb[k] : v[k] * (a[k] * inv);
  }
}

// x += scale ⊙ u (scale may be null), then y = layer_norm(x), as add_scaled_kernel then
// layer_norm_kernel compute them.
__global__ void add_layer_norm_kernel(float* x, const float* u, const float* __restrict__ scale,
                                      const float* __restrict__ w, const float* __restrict__ b, float eps, float* y,
                                      int64_t C) {
  pdl_trigger();
  __shared__ float red[32];
  float* r = x + blockIdx.x * C;
  const float s = add_residual_row<false>(r, u + blockIdx.x * C, scale, C);
  const float mean = block_sum(s, red) / static_cast<float>(C);
  float var = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const float d = r[c] - mean;
    var += d * d;
  }
  const float inv = 1.f / sqrtf(block_sum(var, red) / static_cast<float>(C) + eps);
  float* o = y + blockIdx.x * C;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) o[c] = (r[c] - mean) * inv * w[c] + b[c];
}

}  // namespace
}  // namespace cuda

void CudaBackend::layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor& y) {
  impl_->enter(__func__);
  const char* op = "layer_norm";
  const int64_t C = w.numel(), N = C ? x.numel() / C : 0;
  MOSHI_CHECK(C > 0 && x.numel() == N * C && y.numel() == x.numel() && b.numel() == C, "layer_norm: shapes x ",
              shape_str(x.shape()), " weight ", shape_str(w.shape()), " y ", shape_str(y.shape()));
  MOSHI_CHECK(N <= INT32_MAX, "cuda layer_norm: too many rows");
  const int threads = cuda::norm_threads(C);
  const float *px = cuda::f32_of(x, op, "input"), *pw = cuda::f32_of(w, op, "weight"), *pb = cuda::f32_of(b, op, "bias");
  float* py = cuda::f32_of(y, op, "output");
  if (C <= static_cast<int64_t>(cuda::kHeld) * threads)  // (x is only read: the kernel's x is not const)
    cuda::launch_chain(*impl_, op, cuda::add_norm_held_kernel<true>, dim3(static_cast<unsigned>(N)), dim3(threads), 0,
                       const_cast<float*>(px), static_cast<const float*>(nullptr), static_cast<const float*>(nullptr),
                       pw, pb, eps, py, C);
  else
    cuda::launch(*impl_, op, cuda::layer_norm_kernel, dim3(static_cast<unsigned>(N)), dim3(threads), 0, px, pw, pb,
                 eps, py, C);
}

void CudaBackend::rms_norm(const Tensor& x, const Tensor& alpha, float eps, Tensor& y) {
  impl_->enter(__func__);
  const char* op = "rms_norm";
  const int64_t C = alpha.numel(), N = C ? x.numel() / C : 0;
  MOSHI_CHECK(C > 0 && x.numel() == N * C && y.numel() == x.numel(), "rms_norm: shapes x ", shape_str(x.shape()),
              " alpha ", shape_str(alpha.shape()), " y ", shape_str(y.shape()));
  MOSHI_CHECK(N <= INT32_MAX, "cuda rms_norm: too many rows");
  const int threads = cuda::norm_threads(C);
  const float *px = cuda::f32_of(x, op, "input"), *pa = cuda::f32_of(alpha, op, "alpha");
  float* py = cuda::f32_of(y, op, "output");
  if (C <= static_cast<int64_t>(cuda::kHeld) * threads)  // (x is only read: the kernel's x is not const)
    cuda::launch_chain(*impl_, op, cuda::add_norm_held_kernel<false>, dim3(static_cast<unsigned>(N)), dim3(threads),
                       0, const_cast<float*>(px), static_cast<const float*>(nullptr),
                       static_cast<const float*>(nullptr), pa, static_cast<const float*>(nullptr), eps, py, C);
  else
    cuda::launch_chain(*impl_, op, cuda::rms_norm_kernel, dim3(static_cast<unsigned>(N)), dim3(threads), 0, px, pa,
                       eps, py, C);
}

}  // namespace moshi

namespace moshi {

void CudaBackend::add_rms_norm(Tensor& x, const Tensor& u, const Tensor* scale, const Tensor& alpha, float eps,
                               Tensor& y) {
  impl_->enter(__func__);
  const char* op = "add_rms_norm";
  const int64_t C = alpha.numel(), N = C ? x.numel() / C : 0;
  MOSHI_CHECK(C > 0 && x.numel() == N * C && u.numel() == x.numel() && y.numel() == x.numel() &&
                  (!scale || scale->numel() == C),
              "add_rms_norm: shapes x ", shape_str(x.shape()), " u ", shape_str(u.shape()), " alpha ",
              shape_str(alpha.shape()), " y ", shape_str(y.shape()));
  MOSHI_CHECK(N <= INT32_MAX, "cuda add_rms_norm: too many rows");
  const int threads = cuda::norm_threads(C);
  float* px = cuda::f32_of(x, op, "x");
  const float* pu = cuda::f32_of(u, op, "u");
  const float* ps = scale ? cuda::f32_of(*scale, op, "scale") : nullptr;
  const float* pa = cuda::f32_of(alpha, op, "alpha");
  float* py = cuda::f32_of(y, op, "output");
  if (C <= static_cast<int64_t>(cuda::kHeld) * threads)
    cuda::launch_early(*impl_, op, cuda::add_norm_held_kernel<false>, dim3(static_cast<unsigned>(N)), dim3(threads),
                       0, px, pu, ps, pa, static_cast<const float*>(nullptr), eps, py, C);
  else
    cuda::launch(*impl_, op, cuda::add_rms_norm_kernel, dim3(static_cast<unsigned>(N)), dim3(threads), 0, px, pu, ps,
                 pa, eps, py, C);
}

}  // namespace moshi

namespace moshi {

void CudaBackend::add_layer_norm(Tensor& x, const Tensor& u, const Tensor* scale, const Tensor& w, const Tensor& b,
                                 float eps, Tensor& y) {
  impl_->enter(__func__);
  const char* op = "add_layer_norm";
  const int64_t C = w.numel(), N = C ? x.numel() / C : 0;
  MOSHI_CHECK(C > 0 && x.numel() == N * C && u.numel() == x.numel() && y.numel() == x.numel() && b.numel() == C &&
                  (!scale || scale->numel() == C),
              "add_layer_norm: shapes x ", shape_str(x.shape()), " u ", shape_str(u.shape()), " weight ",
              shape_str(w.shape()), " y ", shape_str(y.shape()));
  MOSHI_CHECK(N <= INT32_MAX, "cuda add_layer_norm: too many rows");
  const int threads = cuda::norm_threads(C);
  float* px = cuda::f32_of(x, op, "x");
  const float* pu = cuda::f32_of(u, op, "u");
  const float* ps = scale ? cuda::f32_of(*scale, op, "scale") : nullptr;
  const float* pw = cuda::f32_of(w, op, "weight");
  const float* pb = cuda::f32_of(b, op, "bias");
  float* py = cuda::f32_of(y, op, "output");
  if (C <= static_cast<int64_t>(cuda::kHeld) * threads)
    cuda::launch_early(*impl_, op, cuda::add_norm_held_kernel<true>, dim3(static_cast<unsigned>(N)), dim3(threads), 0,
                       px, pu, ps, pw, pb, eps, py, C);
  else
    cuda::launch(*impl_, op, cuda::add_layer_norm_kernel, dim3(static_cast<unsigned>(N)), dim3(threads), 0, px, pu,
                 ps, pw, pb, eps, py, C);
}

}  // namespace moshi
