// Vector quantisation on the GPU: nearest codebook entry per row (the reference's distance
// sqrt(max(-2·x·c + |x|² + |c|², 0)), ties to the lowest index) and codebook lookups. The dot
// products x·c are one linear product against the codebook (prepared like a linear weight,
// [bins, D] on the device).
#include <climits>

#include "runtime/cuda/common.cuh"

namespace moshi {
namespace cuda {
namespace {

// (dist, index) ordered by distance, then by index: the CPU's first strict minimum.
__device__ __forceinline__ bool better(float d, int64_t i, float bd, int64_t bi) {
  return d < bd || (d == bd && i < bi);
}

// One block per row n: picks the code from dots [N, bins], writes it, and subtracts the entry.
// The first kPickHeld distances of each thread are computed from values loaded together with
// the row (the codebook norms before waiting for the previous kernel), so that the row's norm,
// the dots and the norms cost one round trip to memory rather than three.
constexpr int kPickHeld = 8;
template <typename TW>
__global__ void vq_pick_kernel(float* __restrict__ r, const TW* __restrict__ cb, const float* __restrict__ cn,
                               const float* __restrict__ dots, int64_t* __restrict__ codes, int64_t S,
                               int64_t bins, int64_t D) {
  pdl_trigger();
  __shared__ float red[32];
  __shared__ float sd[32];
  __shared__ int64_t si[32];
  const int64_t n = blockIdx.x, step = blockDim.x;
  float hc[kPickHeld], hd[kPickHeld];
#pragma unroll
  for (int u = 0; u < kPickHeld; ++u) {
    const int64_t j = threadIdx.x + u * step;
    hc[u] = j < bins ? cn[j] : 0.f;
  }
  pdl_wait();
  float* x = r + n * D;
  const float* dr = dots + n * bins;
#pragma unroll
  for (int u = 0; u < kPickHeld; ++u) {
    const int64_t j = threadIdx.x + u * step;
    hd[u] = j < bins ? dr[j] : 0.f;
  }
  float s = 0.f;
  for (int64_t d = threadIdx.x; d < D; d += step) s += x[d] * x[d];
  const float xn = block_sum(s, red);
  float bd = INFINITY;
  int64_t bi = LLONG_MAX;
  // Evaluated in the CPU's order, without fused multiply-adds; j increases, so each thread keeps
  // its first strict minimum.
  const auto visit = [&](int64_t j, float dot, float norm) {
    const float d2 = __fadd_rn(__fadd_rn(-2.f * dot, xn), norm);
    const float dist = sqrtf(d2 > 0.f ? d2 : 0.f);
    if (dist < bd) {
      bd = dist;
      bi = j;
    }
  };
#pragma unroll
  for (int u = 0; u < kPickHeld; ++u) {
    const int64_t j = threadIdx.x + u * step;
    if (j < bins) visit(j, hd[u], hc[u]);
  }
  for (int64_t j = threadIdx.x + kPickHeld * step; j < bins; j += step) visit(j, dr[j], cn[j]);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float od = __shfl_xor_sync(0xffffffffu, bd, o);
    const int64_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (better(od, oi, bd, bi)) {
      bd = od;
      bi = oi;
    }
  }
  if (lane == 0) {
    sd[warp] = bd;
    si[warp] = bi;
  }
  __syncthreads();
  bd = sd[0];
  bi = si[0];
  for (int w = 1; w < nw; ++w)
    if (better(sd[w], si[w], bd, bi)) {
      bd = sd[w];
      bi = si[w];
    }
  const int64_t code = bi == LLONG_MAX ? 0 : bi;  // no finite distance: entry 0, as on the CPU
  if (threadIdx.x == 0) codes[n * S] = code;
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) x[d] -= load_widen(cb + code * D + d);
}

template <typename TW>
__global__ void vq_add_kernel(float* __restrict__ acc, const TW* __restrict__ cb, const int64_t* __restrict__ codes,
                              int64_t S, int64_t bins, int64_t N, int64_t D) {
  // Codes are clamped to the codebook (they were checked before, where they could be).
  MOSHI_GRID_STRIDE(i, N * D) {
    const int64_t c = codes[(i / D) * S];
    acc[i] += load_widen(cb + (c < 0 ? 0 : c >= bins ? bins - 1 : c) * D + i % D);
  }
}

}  // namespace
}  // namespace cuda

void CudaBackend::vq_encode(Tensor& r, const Tensor& codebook, const Tensor& norms, Tensor& codes, int64_t col) {
  impl_->enter(__func__);
  const char* op = "vq_encode";
  cuda::need_cuda(codebook, op, "codebook");
  const int64_t bins = norms.numel(), D = codebook.dim(1), N = D ? r.numel() / D : 0;
  MOSHI_CHECK(codebook.ndim() == 2 && codebook.dim(0) == bins && r.numel() == N * D, "vq_encode: codebook ",
              shape_str(codebook.shape()), " with ", bins, " norms for rows ", shape_str(r.shape()));
  const int64_t S = N ? codes.numel() / N : 1;
  MOSHI_CHECK(codes.numel() == N * S && col >= 0 && col < S, "vq_encode: ", codes.numel(), " codes for ", N,
              " rows, column ", col);
  cuda::need_cuda(codes, op, "codes");
  MOSHI_CHECK(codes.dtype() == DType::I64, "cuda vq_encode: codes must be i64");
  MOSHI_CHECK(N <= INT32_MAX && bins > 0, "cuda vq_encode: bad sizes");
  if (N == 0) return;
  cuda::Impl& im = *impl_;
  float* pr = cuda::f32_of(r, op, "residual");
  const float* cn = cuda::f32_of(norms, op, "norms");
  float* dots = im.ensure_t<float>(cuda::kDots, N * bins, op);
  cuda::matmul(im, pr, N, codebook, nullptr, dots, op);
  const dim3 grid(static_cast<unsigned>(N));
  if (codebook.dtype() == DType::BF16)
    cuda::launch_early(im, op, cuda::vq_pick_kernel<uint16_t>, grid, dim3(256), 0, pr, codebook.ptr<uint16_t>(), cn,
                       dots, codes.i64() + col, S, bins, D);
  else
    cuda::launch_early(im, op, cuda::vq_pick_kernel<float>, grid, dim3(256), 0, pr, codebook.f32(), cn, dots,
                       codes.i64() + col, S, bins, D);
}

void CudaBackend::vq_decode_add(Tensor& acc, const Tensor& codebook, const Tensor& norms, const Tensor& codes,
                                int64_t col) {
  impl_->enter(__func__);
  const char* op = "vq_decode_add";
  cuda::need_cuda(codebook, op, "codebook");
  cuda::need_cuda(codes, op, "codes");
  const int64_t bins = norms.numel(), D = codebook.dim(1), N = D ? acc.numel() / D : 0,
                S = N ? codes.numel() / N : 1;
  MOSHI_CHECK(codebook.ndim() == 2 && codebook.dim(0) == bins && acc.numel() == N * D && codes.numel() == N * S &&
                  col >= 0 && col < S && codes.dtype() == DType::I64,
              "vq_decode_add: codebook ", shape_str(codebook.shape()), ", ", N, " codes, accumulator ",
              shape_str(acc.shape()));
  if (N == 0) return;
  cuda::Impl& im = *impl_;
  // Outside recorded stages the codes are checked on the host first (one small copy) so that a
  // bad code is an error; inside one (no round trips there) the caller has checked them and the
  // kernel clamps, so nothing is ever read outside the codebook.
  if (im.mode == cuda::Mode::Eager) {
    std::vector<int64_t> host(static_cast<size_t>(codes.numel()));
    download(codes, host.data());
    for (int64_t n = 0; n < N; ++n)
      MOSHI_CHECK(host[n * S + col] >= 0 && host[n * S + col] < bins, "code ", host[n * S + col],
                  " is out of range [0, ", bins, ")");
  }
  float* pa = cuda::f32_of(acc, op, "accumulator");
  const dim3 grid(cuda::grid_for(im, N * D));
  if (codebook.dtype() == DType::BF16)
    cuda::launch(im, op, cuda::vq_add_kernel<uint16_t>, grid, dim3(256), 0, pa, codebook.ptr<uint16_t>(),
                 codes.i64() + col, S, bins, N, D);
  else
    cuda::launch(im, op, cuda::vq_add_kernel<float>, grid, dim3(256), 0, pa, codebook.f32(), codes.i64() + col, S, bins, N, D);
}

}  // namespace moshi
