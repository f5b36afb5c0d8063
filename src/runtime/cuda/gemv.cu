// Linear layers: y[N, out] = x[N, in] · wᵀ (+ bias) with w [out, in] f32 or bf16 and f32
// activations and accumulation.
//
// Few rows (the LM's decoding step: N = batch) are bound by reading the weights once, so they
// run a streaming GEMV: each warp owns R output rows and walks them with 16-byte loads that
// bypass L1 (8 loads in flight per lane), the N activation rows are read through the read-only
// cache and reused for the R weight rows, and lanes are summed with shuffles. When there are
// too few rows to fill the GPU, the warps of a block split `in` and add their parts in shared
// memory. bf16 weights with 2..64 rows go to the tensor cores (mma_gemm.cu). Many rows go to
// cuBLAS (f32 compute, no TF32); cuBLAS has no bf16 x f32 product, so bf16 weights are widened
// into f32 scratch a slice of rows at a time (few-row bf16 products whose shape the tensor-core
// kernel does not take run several GEMV passes instead, which read less).
#include <algorithm>

#include "runtime/cuda/common.cuh"

namespace moshi {
namespace cuda {

namespace {

constexpr int kThreads = 256;  // 8 warps per block
constexpr int kWarps = kThreads / 32;

// Rows of x per GEMV pass (kGemvRows, common.cuh); f32 beyond it goes to cuBLAS, bf16 takes
// several passes up to kMaxGemvRowsBf16 (widening for cuBLAS costs ~5x the weight reads).
constexpr int64_t kMaxGemvRowsBf16 = 32;
// bf16 weights with 2..kMaxMmaRows rows go to the tensor-core kernel (mma_gemm.cu), which reads
// the weights once per 32 rows; more rows are cheaper through widening + cuBLAS.
constexpr int64_t kMaxMmaRows = 64;
// Largest f32 slice of widened bf16 weights handed to cuBLAS at once (64 MiB).
constexpr int64_t kWideElems = int64_t{16} << 20;


// 16 bytes of weights as floats: 4 f32 or 8 bf16 (widened exactly).
__device__ __forceinline__ void widen(const uint4& v, float (&f)[4], const float*) {
  f[0] = __uint_as_float(v.x);
  f[1] = __uint_as_float(v.y);
  f[2] = __uint_as_float(v.z);
  f[3] = __uint_as_float(v.w);
}
__device__ __forceinline__ void widen(const uint4& v, float (&f)[8], const uint16_t*) {
  const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(u[i] << 16);
    f[2 * i + 1] = __uint_as_float(u[i] & 0xffff0000u);
  }
}

// VEC consecutive activations (16-byte aligned).
template <int VEC>
__device__ __forceinline__ void load_x(const float* p, float (&f)[VEC]) {
#pragma unroll
  for (int i = 0; i < VEC; i += 4) {
    const float4 v = __ldg(reinterpret_cast<const float4*>(p + i));
    f[i] = v.x;
    f[i + 1] = v.y;
    f[i + 2] = v.z;
    f[i + 3] = v.w;
  }
}

// Output rows per warp for NR activation rows: more rows per warp reuse each activation load
// (which otherwise dominates the L1 traffic at larger NR) at the cost of fewer warps.
__host__ __device__ constexpr int rows_per_warp(int nr) { return nr <= 2 ? 1 : nr <= 4 ? 2 : 4; }

// Requires in % VEC == 0 and 16-byte aligned x and w. `ks` warps of a block share each group of
// R rows, each taking a slice of `in` (ks divides kWarps).
// Passes of 32 lanes x 16 bytes per row a warp loads at once (R·U loads in flight per lane): 8,
// or 4 for bf16 with 4 rows per warp, whose widened weights would otherwise push the kernel past
// 128 registers (2 blocks per SM).
__host__ __device__ constexpr int loads_in_flight(int r, int tw_bytes) { return tw_bytes == 2 && r == 4 ? 1 : 8 / r; }

// Blocks per SM the kernel is compiled for: 4 (at most 64 registers) where one activation row
// leaves room, so that a GPU-wide product of a few thousand rows is one wave of blocks.
__host__ __device__ constexpr int min_blocks(int nr, int tw_bytes) { return tw_bytes == 2 && nr == 1 ? 4 : 2; }

// Largest weight the RMS-normalizing product takes: it saves a small norm kernel's latency but
// streams larger weights more slowly than the plain product (measured on an H100: the
// depformer's 6-12 MB products gain, the temporal's 100-180 MB ones lose).
constexpr int64_t kMaxRmsFusedBytes = int64_t{32} << 20;

// GLU (a gated feed-forward's first product, w [2·out, in]: gate rows then up rows): each warp
// takes gate row i and up row out + i and writes y[n, i] = act(gate) ⊙ up, as gated_kernel
// computes it from the two products' results.
// kAct: y = act(sum + bias), as the product then activation() compute it.
// kChannels: row n = b·tout + t of x is time step t of stream b, and y is channels-first
// [B, out, tout] (a convolution's few output steps: gemv_channels).
// kAdd: y += f.scale ⊙ (sum + bias) (the product that closes a residual branch).
enum Epilogue : int { kStore, kGlu, kAct, kChannels, kAdd };

// RMS: the input is RMS-normalized with alpha f.nw on the way: the dot products take x ⊙ alpha,
// each warp also sums the squares of the x it reads (its slice of `in`: a block's split warps
// cover the whole row), and the results are scaled by 1 / sqrt(mean(x²) + eps) at the end,
// which equals the product of the normalized row.
template <typename TW, int NR, int EPI, bool RMS>
__global__ void __launch_bounds__(kThreads, min_blocks(NR, sizeof(TW)))
    gemv_kernel(const float* __restrict__ x, const TW* __restrict__ w, const float* __restrict__ bias,
                float* __restrict__ y, int64_t in, int64_t out, int ks, Act act, int64_t tout, ProductFusion f) {
  constexpr bool GLU = EPI == kGlu;
  constexpr int VEC = 16 / sizeof(TW);
  constexpr int R = GLU ? 2 : rows_per_warp(NR);
  constexpr int U = loads_in_flight(R, sizeof(TW));
  __shared__ float part[kWarps][R + (RMS ? 1 : 0)][NR];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int groups = kWarps / ks, g = warp / ks, s = warp % ks;
  const int64_t unit = static_cast<int64_t>(blockIdx.x) * groups + g;
  const int64_t row0 = GLU ? unit : unit * R;  // GLU: rows unit and out + unit
  const int64_t nchunks = in / VEC, per = (nchunks + ks - 1) / ks;
  const int64_t c_begin = s * per, c_end = min(nchunks, c_begin + per);
  int64_t rows[R];
  const uint4* wr[R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    // Rows past the end read the last row; they are not written.
    rows[r] = GLU ? min(unit, out - 1) + r * out : min(row0 + r, out - 1);
    wr[r] = reinterpret_cast<const uint4*>(w + rows[r] * in);
  }
  float acc[R][NR], ss[NR];
#pragma unroll
  for (int n = 0; n < NR; ++n) {
    ss[n] = 0.f;
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r][n] = 0.f;
  }

  pdl_trigger();
  // The first loads are issued before waiting for the previous kernel (the weights are never
  // written by it); each later pass loads its weights at the end of the one before.
  uint4 wv[U][R];
  {
    const int64_t c = c_begin + lane;
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int r = 0; r < R; ++r)
        wv[u][r] = c + 32 * u < c_end ? ld_stream_early(wr[r] + c + 32 * u) : make_uint4(0u, 0u, 0u, 0u);
  }
  pdl_wait();
  // The epilogue's add: the lane that writes (r, n) fetches its old value now, off the tail.
  constexpr int kOwned = R * NR;
  const int own_r = lane / NR, own_n = lane % NR;
  float old = 0.f;
  if (EPI == kAdd && s == 0 && lane < kOwned && row0 + own_r < out) old = y[own_n * out + row0 + own_r];
  for (int64_t c = c_begin + lane; c < c_end; c += 32 * U) {
    if (c != c_begin + lane) {
#pragma unroll
      for (int u = 0; u < U; ++u)
#pragma unroll
        for (int r = 0; r < R; ++r)
          wv[u][r] = c + 32 * u < c_end ? ld_stream(wr[r] + c + 32 * u) : make_uint4(0u, 0u, 0u, 0u);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t cc = c + 32 * u;
      if (cc < c_end) {
        float wf[R][VEC];
#pragma unroll
        for (int r = 0; r < R; ++r) widen(wv[u][r], wf[r], static_cast<const TW*>(nullptr));
#pragma unroll
        for (int n = 0; n < NR; ++n) {
          float xv[VEC];
          load_x<VEC>(x + n * in + cc * VEC, xv);
          if (RMS)
#pragma unroll
            for (int e = 0; e < VEC; e += 4) {
              const float4 a = __ldg(reinterpret_cast<const float4*>(f.nw + cc * VEC + e));
              ss[n] = fmaf(xv[e], xv[e], ss[n]);
              ss[n] = fmaf(xv[e + 1], xv[e + 1], ss[n]);
              ss[n] = fmaf(xv[e + 2], xv[e + 2], ss[n]);
              ss[n] = fmaf(xv[e + 3], xv[e + 3], ss[n]);
              xv[e] *= a.x;
              xv[e + 1] *= a.y;
              xv[e + 2] *= a.z;
              xv[e + 3] *= a.w;
            }
#pragma unroll
          for (int r = 0; r < R; ++r)
#pragma unroll
            for (int e = 0; e < VEC; ++e) acc[r][n] = fmaf(wf[r][e], xv[e], acc[r][n]);
        }
      }
    }
  }
#pragma unroll
  for (int n = 0; n < NR; ++n) {
    if (RMS) ss[n] = warp_sum(ss[n]);
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r][n] = warp_sum(acc[r][n]);
  }

  if (ks > 1) {  // uniform over the block: the first warp of each group adds the others' parts
    if (lane == 0)
#pragma unroll
      for (int n = 0; n < NR; ++n) {
#pragma unroll
        for (int r = 0; r < R; ++r) part[warp][r][n] = acc[r][n];
        if (RMS) part[warp][R][n] = ss[n];
      }
    __syncthreads();
    if (s != 0) return;
#pragma unroll
    for (int n = 0; n < NR; ++n) {
#pragma unroll
      for (int r = 0; r < R + (RMS ? 1 : 0); ++r) {
        float t = 0.f;
        for (int k = 0; k < ks; ++k) t += part[warp + k][r][n];
        if (r < R)
          acc[r][n] = t;
        else
          ss[n] = t;
      }
    }
  }
  if (RMS)
#pragma unroll
    for (int n = 0; n < NR; ++n) {
      const float inv = 1.f / sqrtf(ss[n] / static_cast<float>(in) + f.eps);
#pragma unroll
      for (int r = 0; r < R; ++r) acc[r][n] *= inv;
    }
  if (GLU) {
#pragma unroll
    for (int n = 0; n < NR; ++n)
      if (lane == n % 32 && unit < out) {
        const float gate = acc[0][n] + (bias ? bias[rows[0]] : 0.f), up = acc[1][n] + (bias ? bias[rows[1]] : 0.f);
        y[n * out + unit] = apply_act(gate, act) * up;
      }
  } else {
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int n = 0; n < NR; ++n)
        if (lane == (r * NR + n) % 32 && row0 + r < out) {
          const float v = acc[r][n] + (bias ? bias[row0 + r] : 0.f);
          if (EPI == kChannels) {
            y[((n / tout) * out + row0 + r) * tout + n % tout] = v;
          } else {
            const float o = EPI == kAct ? apply_act(v, act) : v;
            y[n * out + row0 + r] = EPI == kAdd ? old + (f.scale ? f.scale[row0 + r] * o : o) : o;
          }
        }
  }
}

// Any shape or alignment (small odd layers): one warp per output row, scalar loads.
template <typename TW>
__global__ void gemv_any_kernel(const float* __restrict__ x, const TW* __restrict__ w, const float* __restrict__ bias,
                                float* __restrict__ y, int64_t N, int64_t in, int64_t out) {
  const int lane = threadIdx.x & 31;
  const int64_t o = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (o >= out) return;
  const TW* wr = w + o * in;
  for (int64_t n = 0; n < N; ++n) {
    float acc = 0.f;
    for (int64_t i = lane; i < in; i += 32) acc = fmaf(load_widen(wr + i), x[n * in + i], acc);
    acc = warp_sum(acc);
    if (lane == 0) y[n * out + o] = acc + (bias ? bias[o] : 0.f);
  }
}

__global__ void widen_bf16_kernel(const uint16_t* __restrict__ src, float* __restrict__ dst, int64_t n) {
  MOSHI_GRID_STRIDE(i, n) dst[i] = bf16_bits_to_f32(src[i]);
}

__global__ void add_bias_kernel(float* __restrict__ y, const float* __restrict__ bias, int64_t N, int64_t out) {
  MOSHI_GRID_STRIDE(i, N * out) y[i] += bias[i % out];
}

// GLU: `out` gated outputs of a [2·out, in] weight (see gemv_kernel).
template <typename TW, int NR, int EPI = kStore, bool RMS = false>
void launch_gemv(Impl& im, const float* x, const TW* w, const float* bias, float* y, int64_t in, int64_t out,
                 const char* op, Act act = Act::Identity, int64_t tout = 1, const ProductFusion& f = {}) {
  constexpr bool GLU = EPI == kGlu;
  constexpr int VEC = 16 / sizeof(TW);
  constexpr int R = GLU ? 2 : rows_per_warp(NR);
  const int64_t row_groups = GLU ? out : (out + R - 1) / R, nchunks = in / VEC;
  // Split `in` over the warps of a block, keeping at least 2 loads per lane in each slice: far
  // enough that a warp issues all its loads at once where it can (a warp that must come back
  // for more waits out the memory latency again: measured ~35% slower for 4096 x 11264), then
  // as far as fills the GPU's SMs best to the end.
  constexpr int U = loads_in_flight(R, sizeof(TW));
  int max_ks = 1, min_ks = 1;
  while (max_ks < kWarps && nchunks / (max_ks * 2) >= 64) max_ks *= 2;
  while (min_ks < max_ks && (nchunks + min_ks - 1) / min_ks > 32 * U) min_ks *= 2;
  const int ks = wave_split(im, (row_groups + kWarps - 1) / kWarps,
                            blocks_per_sm(im, gemv_kernel<TW, NR, EPI, RMS>, kThreads, 0, op), min_ks, max_ks);
  const int64_t groups = kWarps / ks, blocks = (row_groups + groups - 1) / groups;
  launch_early(im, op, gemv_kernel<TW, NR, EPI, RMS>, dim3(static_cast<unsigned>(blocks)), dim3(kThreads), 0, x, w,
               bias, y, in, out, ks, act, tout, f);
}

template <typename TW, int EPI = kStore>
void gemv_rows(Impl& im, const float* x, int64_t N, const TW* w, const float* bias, float* y, int64_t in,
               int64_t out, const char* op, Act act = Act::Identity, int64_t tout = 1) {
  constexpr int VEC = 16 / sizeof(TW);
  const bool fast = in % VEC == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
                    reinterpret_cast<uintptr_t>(w) % 16 == 0;
  if (!fast) {
    launch(im, op, gemv_any_kernel<TW>, dim3(static_cast<unsigned>((out + kWarps - 1) / kWarps)), dim3(kThreads), 0,
           x, w, bias, y, N, in, out);
    return;
  }
  for (int64_t n0 = 0; n0 < N; n0 += kGemvRows) {
    const int64_t nr = std::min<int64_t>(kGemvRows, N - n0);
    const float* xs = x + n0 * in;
    float* ys = y + n0 * out;
    switch (nr) {
      case 1: launch_gemv<TW, 1, EPI>(im, xs, w, bias, ys, in, out, op, act, tout); break;
      case 2: launch_gemv<TW, 2, EPI>(im, xs, w, bias, ys, in, out, op, act, tout); break;
      case 3: launch_gemv<TW, 3, EPI>(im, xs, w, bias, ys, in, out, op, act, tout); break;
      case 4: launch_gemv<TW, 4, EPI>(im, xs, w, bias, ys, in, out, op, act, tout); break;
      case 5: launch_gemv<TW, 5, EPI>(im, xs, w, bias, ys, in, out, op, act, tout); break;
      case 6: launch_gemv<TW, 6, EPI>(im, xs, w, bias, ys, in, out, op, act, tout); break;
      case 7: launch_gemv<TW, 7, EPI>(im, xs, w, bias, ys, in, out, op, act, tout); break;
      default: launch_gemv<TW, 8, EPI>(im, xs, w, bias, ys, in, out, op, act, tout); break;
    }
  }
}

// cuBLAS is column-major: y row-major [N, out] is yᵀ [out, N] column-major (ld out), so
// yᵀ = W · xᵀ with W row-major [out, in] read transposed (ld in) and xᵀ [in, N] (ld in).
void sgemm_rows(Impl& im, const float* x, int64_t N, const float* w, float* y, int64_t in, int64_t rows, int64_t ldy,
                const char* op) {
  const float one = 1.f, zero = 0.f;
  im.note(0xb1a5u ^ (static_cast<uint64_t>(rows) << 16) ^ (static_cast<uint64_t>(N) << 40) ^ in);
  if (!im.live()) return;
  MOSHI_CUDA_CHECK(op, cublasGemmEx(im.blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(rows), static_cast<int>(N),
                                    static_cast<int>(in), &one, w, CUDA_R_32F, static_cast<int>(in), x, CUDA_R_32F,
                                    static_cast<int>(in), &zero, y, CUDA_R_32F, static_cast<int>(ldy),
                                    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace

void matmul(Impl& im, const float* x, int64_t N, const Tensor& w, const float* bias, float* y, const char* op) {
  const int64_t out = w.dim(0), in = w.dim(1);
  if (N <= 0 || out <= 0) return;
  std::string named;  // profiles tell the shapes apart
  if (im.profile) {
    named = std::string(op) + " " + std::to_string(out) + "x" + std::to_string(in) + " N" + std::to_string(N);
    op = named.c_str();
  }
  MOSHI_CHECK(N <= INT32_MAX && in <= INT32_MAX && out <= INT32_MAX, "cuda ", op, ": product too large");
  const bool bf16 = w.dtype() == DType::BF16;
  if (bf16 && N <= kMaxMmaRows && mma_gemm_fits(x, N, w)) return mma_gemm(im, x, N, w, bias, y, op);
  if (bf16 && N <= kMaxGemvRowsBf16)
    return gemv_rows(im, x, N, w.ptr<uint16_t>(), bias, y, in, out, op);
  if (!bf16 && N <= kGemvRows) return gemv_rows(im, x, N, w.f32(), bias, y, in, out, op);
  if (bf16) {
    const int64_t slice = std::max<int64_t>(1, std::min(out, kWideElems / std::max<int64_t>(in, 1)));
    float* wide = im.ensure_t<float>(kWideW, slice * in, op);
    for (int64_t o0 = 0; o0 < out; o0 += slice) {
      const int64_t rows = std::min(slice, out - o0);
      launch(im, op, widen_bf16_kernel, dim3(grid_for(im, rows * in)), dim3(256), 0, w.ptr<uint16_t>() + o0 * in,
             wide, rows * in);
      sgemm_rows(im, x, N, wide, y + o0, in, rows, out, op);
    }
  } else {
    sgemm_rows(im, x, N, w.f32(), y, in, out, out, op);
  }
  if (bias) launch(im, op, add_bias_kernel, dim3(grid_for(im, N * out)), dim3(256), 0, y, bias, N, out);
}

bool gemv_channels_fits(int64_t N, int64_t in, const float* w) {
  return N >= 1 && N <= kGemvRows && in % 4 == 0 && reinterpret_cast<uintptr_t>(w) % 16 == 0;
}

void gemv_channels(Impl& im, const float* x, int64_t N, const float* w, const float* bias, float* y, int64_t in,
                   int64_t out, int64_t tout, const char* op) {
  MOSHI_CHECK(gemv_channels_fits(N, in, w) && N % tout == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
                  in <= INT32_MAX && out <= INT32_MAX,
              "cuda ", op, ": no channels-first product for ", N, " rows of ", in);
  gemv_rows<float, kChannels>(im, x, N, w, bias, y, in, out, op, Act::Identity, tout);
}

bool matmul_act(Impl& im, const float* x, int64_t N, const Tensor& w, const float* bias, float* y, Act act,
                const char* op) {
  const int64_t out = w.dim(0), in = w.dim(1);
  const bool bf16 = w.dtype() == DType::BF16;
  const int vec = bf16 ? 8 : 4;
  if (N <= 0 || out <= 0 || in % vec != 0 || reinterpret_cast<uintptr_t>(x) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(w.data()) % 16 != 0 || (bf16 ? N != 1 : N > kGemvRows))
    return false;
  MOSHI_CHECK(in <= INT32_MAX && out <= INT32_MAX, "cuda ", op, ": product too large");
  if (bf16)
    launch_gemv<uint16_t, 1, kAct>(im, x, w.ptr<uint16_t>(), bias, y, in, out, op, act);
  else
    gemv_rows<float, kAct>(im, x, N, w.f32(), bias, y, in, out, op, act);
  return true;
}

bool matmul_glu(Impl& im, const float* x, int64_t N, const Tensor& w, float* y, Act act, const char* op) {
  const int64_t rows = w.dim(0), in = w.dim(1), H = rows / 2;
  if (w.dtype() != DType::BF16 || N <= 0 || N > kMaxMmaRows || H <= 0 || in % 32 != 0 ||
      reinterpret_cast<uintptr_t>(x) % 16 != 0 || reinterpret_cast<uintptr_t>(w.data()) % 16 != 0)
    return false;
  MOSHI_CHECK(in <= INT32_MAX && rows <= INT32_MAX, "cuda ", op, ": product too large");
  if (N == 1)
    launch_gemv<uint16_t, 1, kGlu>(im, x, w.ptr<uint16_t>(), nullptr, y, in, H, op, act);
  else
    mma_gemm_glu(im, x, N, w, nullptr, y, act, op);
  return true;
}

bool matmul_fused(Impl& im, const float* x, int64_t N, const Tensor& w, const float* bias, float* y, ProductKind kind,
                  Act act, const ProductFusion& f, const char* op) {
  const bool bf16 = w.dtype() == DType::BF16, glu = kind == ProductKind::Glu;
  const int64_t rows = w.dim(0), in = w.dim(1), out = glu ? rows / 2 : rows;
  const int vec = bf16 ? 8 : 4;
  if (N <= 0 || out <= 0 || in % vec != 0 || reinterpret_cast<uintptr_t>(x) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(w.data()) % 16 != 0 || (glu && (bias || f.add || !bf16)))
    return false;
  MOSHI_CHECK(in <= INT32_MAX && rows <= INT32_MAX, "cuda ", op, ": product too large");
  std::string named;  // profiles tell the shapes apart
  if (im.profile) {
    named = std::string(op) + " " + std::to_string(rows) + "x" + std::to_string(in) + " N" + std::to_string(N);
    op = named.c_str();
  }
  const uint16_t* wb = bf16 ? w.ptr<uint16_t>() : nullptr;
  if (f.nw) {  // RMSNorm folded into a bf16 product: one row streaming (gemv_kernel), or tensor cores
    if (!bf16 || N > kMaxMmaRows || f.add || reinterpret_cast<uintptr_t>(f.nw) % 16 != 0 ||
        w.nbytes() > kMaxRmsFusedBytes || (N > 1 && !mma_gemm_fits(x, N, w)))
      return false;
    if (N > 1)
      mma_gemm_fused(im, x, N, w, bias, y, glu, act, f, op);
    else if (glu)
      launch_gemv<uint16_t, 1, kGlu, true>(im, x, wb, nullptr, y, in, out, op, act, 1, f);
    else
      launch_gemv<uint16_t, 1, kStore, true>(im, x, wb, bias, y, in, out, op, Act::Identity, 1, f);
    return true;
  }
  if (kind != ProductKind::Plain || !f.add) return false;  // (the other kinds have their own ops)
  if (bf16 && N >= 2 && N <= kMaxMmaRows && mma_gemm_fits(x, N, w)) {
    mma_gemm_fused(im, x, N, w, bias, y, false, Act::Identity, f, op);
  } else if (bf16 && N == 1) {
    launch_gemv<uint16_t, 1, kAdd>(im, x, wb, bias, y, in, out, op, Act::Identity, 1, f);
  } else {
    return false;
  }
  return true;
}

}  // namespace cuda

namespace {

// The fused form of an RMSNorm (InputNorm with `layer` false).
cuda::ProductFusion norm_fusion(const InputNorm& n, const char* op) {
  cuda::ProductFusion f;
  MOSHI_CHECK(n.w, "cuda ", op, ": the norm needs its weights");
  f.nw = cuda::f32_of(*n.w, op, "norm weight");
  f.eps = n.eps;
  return f;
}

// Checks a prepared linear weight against x [N, in] and y [N, out] (GLU: out = rows / 2); N.
int64_t product_rows(const Tensor& x, const Tensor& w, const Tensor& y, bool glu, const char* op) {
  cuda::need_cuda(w, op, "weight");
  MOSHI_CHECK(w.ndim() == 2 && (w.dtype() == DType::F32 || w.dtype() == DType::BF16) && (!glu || w.dim(0) % 2 == 0),
              "cuda ", op, ": weight ", shape_str(w.shape()), " is not a prepared linear weight");
  const int64_t out = glu ? w.dim(0) / 2 : w.dim(0), in = w.dim(1), N = in ? x.numel() / in : 0;
  MOSHI_CHECK(x.numel() == N * in && y.numel() == N * out, op, ": shapes ", shape_str(x.shape()), " x ",
              shape_str(w.shape()), " -> ", shape_str(y.shape()));
  return N;
}

const float* bias_of(const Tensor* bias, int64_t out, const char* op) {
  if (!bias) return nullptr;
  MOSHI_CHECK(bias->numel() == out, "cuda ", op, ": bias of ", bias->numel(), " for ", out, " outputs");
  return cuda::f32_of(*bias, op, "bias");
}

}  // namespace

bool CudaBackend::folds_norms(int64_t rows, bool layer_norm) const {
  // Measured on an H100 (docs/performance.md): batch 1 and 8 gain; at 32 rows the tensor-core
  // product's read-modify-write epilogue and the normalizing product cost more than the fused
  // add + norm kernel they replace. The LayerNorm (Mimi) has no folded kernel.
  return !layer_norm && rows <= cuda::kGemvRows;
}

void CudaBackend::norm_linear(const Tensor& x, const InputNorm& n, Tensor& h, const Tensor& w, const Tensor* bias,
                              Tensor& y) {
  impl_->enter(__func__);
  const char* op = "norm_linear";
  const int64_t N = product_rows(x, w, y, false, op);
  if (!n.layer && cuda::matmul_fused(*impl_, cuda::f32_of(x, op, "input"), N, w, bias_of(bias, w.dim(0), op),
                         cuda::f32_of(y, op, "output"), cuda::ProductKind::Plain, Act::Identity, norm_fusion(n, op), op))
    return;
  Backend::norm_linear(x, n, h, w, bias, y);
}

void CudaBackend::norm_linear_glu(const Tensor& x, const InputNorm& n, Tensor& h, const Tensor& w, Act act, Tensor& t,
                                  Tensor& y) {
  impl_->enter(__func__);
  const char* op = "norm_linear_glu";
  const int64_t N = product_rows(x, w, y, true, op);
  if (!n.layer && cuda::matmul_fused(*impl_, cuda::f32_of(x, op, "input"), N, w, nullptr, cuda::f32_of(y, op, "output"),
                         cuda::ProductKind::Glu, act, norm_fusion(n, op), op))
    return;
  Backend::norm_linear_glu(x, n, h, w, act, t, y);
}

void CudaBackend::linear_add(const Tensor& a, const Tensor& w, const Tensor* bias, const Tensor* scale, Tensor& t,
                             Tensor& x) {
  impl_->enter(__func__);
  const char* op = "linear_add";
  const int64_t N = product_rows(a, w, x, false, op);
  cuda::ProductFusion f;
  f.add = true;
  if (scale) {
    MOSHI_CHECK(scale->numel() == w.dim(0), "cuda linear_add: scale of ", scale->numel(), " for ", w.dim(0),
                " outputs");
    f.scale = cuda::f32_of(*scale, op, "scale");
  }
  if (cuda::matmul_fused(*impl_, cuda::f32_of(a, op, "input"), N, w, bias_of(bias, w.dim(0), op),
                         cuda::f32_of(x, op, "output"), cuda::ProductKind::Plain, Act::Identity, f, op))
    return;
  Backend::linear_add(a, w, bias, scale, t, x);
}

void CudaBackend::linear_act(const Tensor& x, const Tensor& w, const Tensor* bias, Act act, Tensor& y) {
  impl_->enter(__func__);
  const char* op = "linear_act";
  cuda::need_cuda(w, op, "weight");
  MOSHI_CHECK(w.ndim() == 2, "cuda linear_act: weight ", shape_str(w.shape()), " is not a prepared linear weight");
  const int64_t out = w.dim(0), in = w.dim(1), N = in ? x.numel() / in : 0;
  MOSHI_CHECK(x.numel() == N * in && y.numel() == N * out, "linear_act: shapes ", shape_str(x.shape()), " x ",
              shape_str(w.shape()), " -> ", shape_str(y.shape()));
  const float* pb = nullptr;
  if (bias) {
    pb = cuda::f32_of(*bias, op, "bias");
    MOSHI_CHECK(bias->numel() == out, "cuda linear_act: bias of ", bias->numel(), " for ", out, " outputs");
  }
  if (cuda::matmul_act(*impl_, cuda::f32_of(x, op, "input"), N, w, pb, cuda::f32_of(y, op, "output"), act, op)) return;
  linear(x, w, bias, y);
  activation(y, act);
}

void CudaBackend::linear_glu(const Tensor& x, const Tensor& w, Act act, Tensor& t, Tensor& y) {
  impl_->enter(__func__);
  const char* op = "linear_glu";
  cuda::need_cuda(w, op, "weight");
  MOSHI_CHECK(w.ndim() == 2 && w.dim(0) % 2 == 0, "cuda linear_glu: weight ", shape_str(w.shape()),
              " is not a prepared [2H, in] linear weight");
  const int64_t H = w.dim(0) / 2, in = w.dim(1), N = in ? x.numel() / in : 0;
  MOSHI_CHECK(x.numel() == N * in && t.numel() == 2 * N * H && y.numel() == N * H, "linear_glu: shapes ",
              shape_str(x.shape()), " x ", shape_str(w.shape()), " -> ", shape_str(t.shape()), " -> ",
              shape_str(y.shape()));
  if (cuda::matmul_glu(*impl_, cuda::f32_of(x, op, "input"), N, w, cuda::f32_of(y, op, "output"), act, op)) return;
  linear(x, w, nullptr, t);
  gated_activation(t, act, y);
}

void CudaBackend::linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  impl_->enter(__func__);
  cuda::need_cuda(w, "linear", "weight");
  MOSHI_CHECK(w.ndim() == 2 && (w.dtype() == DType::F32 || w.dtype() == DType::BF16),
              "cuda linear: weight ", shape_str(w.shape()), " is not a prepared linear weight");
  const int64_t out = w.dim(0), in = w.dim(1), N = in ? x.numel() / in : 0;
  MOSHI_CHECK(x.numel() == N * in && y.numel() == N * out, "linear: shapes ", shape_str(x.shape()), " x ",
              shape_str(w.shape()), " -> ", shape_str(y.shape()));
  const float* pb = nullptr;
  if (bias) {
    pb = cuda::f32_of(*bias, "linear", "bias");
    MOSHI_CHECK(bias->numel() == out, "cuda linear: bias of ", bias->numel(), " for ", out, " outputs");
  }
  cuda::matmul(*impl_, cuda::f32_of(x, "linear", "input"), N, w, pb, cuda::f32_of(y, "linear", "output"), "linear");
}

}  // namespace moshi
