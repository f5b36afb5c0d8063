// Token sampling on the GPU (model-spec §3.4), one block per stream, drawing what the host's
// sample_token draws from the same logits: greedy argmax (ties: lowest index), or temperature +
// top-k followed by the exponential race with the same counter-based uniforms.
//
// Top-k is a radix select on the logits' order-preserving integer keys (4 passes of 8 bits over
// the row, counted in shared memory), which yields the k-th largest key and how many of the
// keys equal to it are kept (the lowest indices, as the host's sort keeps them). Candidates'
// scores exp(l/T - max) / -log(u) are then compared in double; the host also divides by the
// softmax sum first, which scales every score alike.
#include "runtime/counter_rng.h"
#include "runtime/cuda/common.cuh"

namespace moshi {
namespace cuda {
namespace {

constexpr int kSampleThreads = 512;
constexpr int kSampleWarps = kSampleThreads / 32;


// Larger floats give larger keys.
__device__ __forceinline__ uint32_t order_key(float f) {
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Argmax of (score, -index) over the warp, into every lane.
__device__ __forceinline__ void warp_argmax(double& score, int64_t& idx) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const double os = __shfl_xor_sync(0xffffffffu, score, o);
    const int64_t oi = __shfl_xor_sync(0xffffffffu, idx, o);
    if (os > score || (os == score && oi < idx)) {
      score = os;
      idx = oi;
    }
  }
}

// Block-wide argmax of (score, -index): every thread gets the winning index.
__device__ int64_t block_argmax(double score, int64_t idx, double* s_sc, int64_t* s_ix) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  warp_argmax(score, idx);
  __syncthreads();
  if (lane == 0) {
    s_sc[warp] = score;
    s_ix[warp] = idx;
  }
  __syncthreads();
  if (warp == 0) {
    score = lane < kSampleWarps ? s_sc[lane] : -INFINITY;
    idx = lane < kSampleWarps ? s_ix[lane] : INT64_MAX;
    warp_argmax(score, idx);
    if (lane == 0) s_ix[0] = idx;
  }
  __syncthreads();
  return s_ix[0];
}

__global__ void __launch_bounds__(kSampleThreads)
    sample_kernel(const float* __restrict__ logits, int64_t V, int greedy, float temp, int top_k, uint64_t seed,
                  uint64_t site, const int64_t* __restrict__ steps, int64_t* __restrict__ tokens, int64_t S,
                  int64_t col) {
  pdl_trigger();
  pdl_wait();
  __shared__ double s_sc[kSampleWarps];
  __shared__ int64_t s_ix[kSampleWarps];
  __shared__ uint32_t hist[256];
  __shared__ uint32_t s_prefix, s_need, s_eq, s_warp[kSampleWarps];
  __shared__ float s_red[32];
  const int64_t b = blockIdx.x;
  const float* l = logits + b * V;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  if (greedy) {
    double best = -INFINITY;
    int64_t bi = INT64_MAX;
    for (int64_t i = tid; i < V; i += blockDim.x)
      if (static_cast<double>(l[i]) > best || bi == INT64_MAX) {  // strict: the lowest index of a tie
        best = l[i];
        bi = i;
      }
    const int64_t w = block_argmax(best, bi, s_sc, s_ix);
    if (tid == 0) tokens[b * S + col] = w;
    return;
  }
  // Max of l / T, as the host computes it (float division).
  float mx = -INFINITY;
  for (int64_t i = tid; i < V; i += blockDim.x) mx = fmaxf(mx, l[i] / temp);
  mx = warp_max(mx);
  if (lane == 0) s_red[warp] = mx;
  __syncthreads();
  mx = -INFINITY;
  for (int w = 0; w < kSampleWarps; ++w) mx = fmaxf(mx, s_red[w]);

  // Radix select of the K-th largest key: `prefix` gathers its digits, `need` counts how many
  // keys equal to it are kept.
  const int64_t K = top_k > 0 && top_k < V ? top_k : V;
  uint32_t prefix = 0, mask = 0, need = static_cast<uint32_t>(K), eq_total = 0;
  const bool select = K < V;
  if (select) {
    for (int shift = 24; shift >= 0; shift -= 8) {
      for (int i = tid; i < 256; i += blockDim.x) hist[i] = 0;
      __syncthreads();
      for (int64_t i = tid; i < V; i += blockDim.x) {
        const uint32_t key = order_key(l[i]);
        if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);
      }
      __syncthreads();
      if (warp == 0) {
        // Lane j owns digits 255-8j down to 248-8j; scan the lanes' totals from the top digit.
        uint32_t c[8], tot = 0;
#pragma unroll
        for (int j = 0; j < 8; ++j) tot += (c[j] = hist[255 - 8 * lane - j]);
        uint32_t incl = tot;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
          const uint32_t v = __shfl_up_sync(0xffffffffu, incl, o);
          if (lane >= o) incl += v;
        }
        uint32_t above = incl - tot;  // keys with a larger digit, in lanes before this one
        if (above < need && need <= incl) {
#pragma unroll
          for (int j = 0; j < 8; ++j) {
            if (above + c[j] >= need) {
              s_prefix = prefix | (static_cast<uint32_t>(255 - 8 * lane - j) << shift);
              s_need = need - above;
              s_eq = c[j];
              break;
            }
            above += c[j];
          }
        }
      }
      __syncthreads();
      prefix = s_prefix;
      need = s_need;
      eq_total = s_eq;
      mask |= 255u << shift;
    }
  }
  // Candidates race: score = exp(l/T - mx) / -log(u).
  const uint64_t step = static_cast<uint64_t>(steps[b]);
  double best = -1;
  int64_t bi = INT64_MAX;
  auto consider = [&](int64_t i) {
    const float p = expf(l[i] / temp - mx);
    const double e = -log(counter_uniform_of(seed, static_cast<uint64_t>(b), step, site, static_cast<uint64_t>(i)));
    const double sc = static_cast<double>(p) / e;
    if (sc > best || (sc == best && i < bi)) {
      best = sc;
      bi = i;
    }
  };
  if (!select || eq_total == need) {  // every key >= the threshold is kept
    for (int64_t i = tid; i < V; i += blockDim.x)
      if (!select || order_key(l[i]) >= prefix) consider(i);
  } else {  // ties at the threshold: keep the lowest `need` indices among them
    uint32_t base = 0;
    for (int64_t c0 = 0; c0 < V; c0 += blockDim.x) {
      const int64_t i = c0 + tid;
      const uint32_t key = i < V ? order_key(l[i]) : 0u;
      const bool eq = i < V && key == prefix;
      const uint32_t ballot = __ballot_sync(0xffffffffu, eq);
      __syncthreads();
      if (lane == 0) s_warp[warp] = __popc(ballot);
      __syncthreads();
      uint32_t before = base;
      for (int w = 0; w < warp; ++w) before += s_warp[w];
      const uint32_t rank = before + __popc(ballot & ((1u << lane) - 1u));
      if (i < V && (key > prefix || (eq && rank < need))) consider(i);
      for (int w = 0; w < kSampleWarps; ++w) base += s_warp[w];
    }
  }
  const int64_t w = block_argmax(best, bi, s_sc, s_ix);
  if (tid == 0) tokens[b * S + col] = w;
}

}  // namespace
}  // namespace cuda

void CudaBackend::sample(const Tensor& logits, const SamplingParams& p, uint64_t seed,
                         const std::vector<int64_t>& steps, uint64_t site, Tensor& tokens, int64_t col) {
  impl_->enter(__func__);
  const char* op = "sample";
  const int64_t B = static_cast<int64_t>(steps.size()), V = B ? logits.numel() / B : 0;
  MOSHI_CHECK(V > 0 && logits.numel() == B * V, "sample: logits ", shape_str(logits.shape()), " for ", B, " streams");
  MOSHI_CHECK(tokens.dtype() == DType::I64 && tokens.ndim() == 2 && tokens.dim(0) == B && col >= 0 &&
                  col < tokens.dim(1),
              "sample: tokens ", shape_str(tokens.shape()), " have no column ", col, " for ", B, " streams");
  cuda::need_cuda(tokens, op, "tokens");
  const float* pl = cuda::f32_of(logits, op, "logits");
  cuda::Impl& im = *impl_;
  const int64_t* dsteps = im.put_args({&steps}, op);
  const bool greedy = !p.use_sampling || p.temp <= 0.f;
  cuda::launch_chain(im, op, cuda::sample_kernel, dim3(static_cast<unsigned>(B)), dim3(cuda::kSampleThreads), 0, pl, V,
               greedy ? 1 : 0, greedy ? 1.f : p.temp, p.top_k, seed, site, dsteps, tokens.i64(), tokens.dim(1), col);
}

}  // namespace moshi
