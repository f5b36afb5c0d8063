// RoPE, KV-cache writes and windowed causal attention over the ring cache on the GPU. The cache
// is head-major, [B, kv_heads, capacity, D] (new_kv_cache): a head's window is one contiguous
// run of rows, which streams faster than rows strided by every head's.
//
// Attention: one block of 4 warps (16 where the grid has fewer blocks than SMs) per (query row,
// head, key split). Each warp takes every 4th
// key of the block's range, 4 keys per iteration (their K and V rows loaded before any is used,
// so 8 row loads are in flight), and keeps an online softmax (running max, sum and weighted V
// sum, all f32); the warps then merge in shared memory. A head's D values are spread over the
// lanes as d = e·32 + lane, so each K/V row load is coalesced for any head_dim <= 256. With few
// rows (the decoding step: batch x heads blocks only), long windows are split over several
// blocks (split-K, "flash decoding") whose partial results a second kernel combines.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "runtime/cuda/common.cuh"

namespace moshi {
namespace cuda {
namespace {

constexpr int kAttnWarps = 4;
constexpr int kWideAttnWarps = 16;  // where the grid has fewer blocks than SMs
constexpr int kKeysPerIter = 4;
constexpr int kMaxHeadDim = 256;
constexpr int kMaxSplits = 64;
constexpr int64_t kMinSplits = 4;  // fewer: no split
constexpr int64_t kMinKeysPerSplit = 128;

// Pair i of each q and k head: (2i, 2i+1) interleaved (im_off 1, stride 2) or (i, i + D/2).
__global__ void rope_kernel(float* __restrict__ qkv, const int64_t* __restrict__ pos, const float* __restrict__ freqs,
                            int64_t rows, int64_t R, int64_t heads_qk, int64_t D, int64_t half, int64_t im_off,
                            int64_t stride) {
  pdl_trigger();
  MOSHI_GRID_STRIDE(k, rows * heads_qk * half) {
    const int64_t i = k % half, h = (k / half) % heads_qk, r = k / (half * heads_qk);
    const float a = freqs[i] * static_cast<float>(pos[r]), c = cosf(a), s = sinf(a);
    float* v = qkv + r * R + h * D + i * stride;
    const float re = v[0], im = v[im_off];
    v[0] = re * c - im * s;
    v[im_off] = re * s + im * c;
  }
}

// RoPE and the cache write in one pass: items [0, rows·heads_qk·half) rotate one pair of a q or
// k head (k pairs are also written to the cache, rotated), items after that copy v. `rope` 0
// skips the rotation.
template <typename TC>
__global__ void rope_kv_write_kernel(float* __restrict__ qkv, TC* __restrict__ kc, TC* __restrict__ vc,
                                     const int64_t* __restrict__ pos, const float* __restrict__ freqs, int rope,
                                     int64_t rows, int64_t T, int64_t R, int heads, int64_t heads_qk, int64_t D,
                                     int64_t half, int64_t im_off, int64_t stride, int64_t QD, int64_t KD,
                                     int64_t cap) {
  pdl_trigger();
  const int64_t n_rot = rows * heads_qk * half;
  MOSHI_GRID_STRIDE(k, n_rot + rows * KD) {
    if (k < n_rot) {
      const int64_t i = k % half, h = (k / half) % heads_qk, r = k / (half * heads_qk);
      float* v = qkv + r * R + h * D + i * stride;
      float re = v[0], im = v[im_off];
      if (rope) {
        const float a = freqs[i] * static_cast<float>(pos[r]), c = cosf(a), s = sinf(a);
        const float nre = re * c - im * s, nim = re * s + im * c;
        re = nre;
        im = nim;
        v[0] = re;
        v[im_off] = im;
      }
      if (h >= heads) {  // a k head: its rotated pair goes to the cache too
        const int64_t b = r / T, slot = pos[r] % cap, kh = h - heads, KH = KD / D;
        TC* dst = kc + ((b * KH + kh) * cap + slot) * D + i * stride;
        store_narrow(dst, re);
        store_narrow(dst + im_off, im);
      }
    } else {
      const int64_t j = k - n_rot, e = j % KD, r = j / KD, b = r / T, slot = pos[r] % cap, KH = KD / D;
      store_narrow(&vc[((b * KH + e / D) * cap + slot) * D + e % D], qkv[r * R + QD + KD + e]);
    }
  }
}

// TC: the cache's element type, float or uint16_t (bf16 bits).
template <typename TC>
__global__ void kv_write_kernel(const float* __restrict__ qkv, TC* __restrict__ kc, TC* __restrict__ vc,
                                const int64_t* __restrict__ pos, int64_t rows, int64_t T, int64_t R, int64_t QD,
                                int64_t KD, int64_t D, int64_t cap) {
  pdl_trigger();
  MOSHI_GRID_STRIDE(k, rows * KD) {
    const int64_t e = k % KD, r = k / KD, b = r / T, slot = pos[r] % cap, KH = KD / D;
    const float* row = qkv + r * R;
    const int64_t at = ((b * KH + e / D) * cap + slot) * D + e % D;
    store_narrow(&kc[at], row[QD + e]);
    store_narrow(&vc[at], row[QD + KD + e]);
  }
}

// EPL consecutive cache values widened to f32 (EPL·sizeof(TC) is 4, 8, 16 or 32 bytes; the
// rows are aligned to it because D = 32·EPL).
template <int EPL>
__device__ __forceinline__ void load_vec(const float* p, float (&f)[EPL]) {
#pragma unroll
  for (int i = 0; i < EPL; i += 4) {
    if (EPL - i >= 4) {
      const float4 v = *reinterpret_cast<const float4*>(p + i);
      f[i] = v.x;
      f[i + 1] = v.y;
      f[i + 2] = v.z;
      f[i + 3] = v.w;
    } else {
#pragma unroll
      for (int j = i; j < EPL; ++j) f[j] = p[j];
    }
  }
}
template <int EPL>
__device__ __forceinline__ void load_vec(const uint16_t* p, float (&f)[EPL]) {
  if constexpr (EPL >= 8) {
#pragma unroll
    for (int i = 0; i < EPL; i += 8) {
      const uint4 v = *reinterpret_cast<const uint4*>(p + i);
      const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        f[i + 2 * j] = __uint_as_float(u[j] << 16);
        f[i + 2 * j + 1] = __uint_as_float(u[j] & 0xffff0000u);
      }
    }
  } else if constexpr (EPL == 4) {
    const uint2 v = *reinterpret_cast<const uint2*>(p);
    f[0] = __uint_as_float(v.x << 16);
    f[1] = __uint_as_float(v.x & 0xffff0000u);
    f[2] = __uint_as_float(v.y << 16);
    f[3] = __uint_as_float(v.y & 0xffff0000u);
  } else if constexpr (EPL == 2) {
    const uint32_t v = *reinterpret_cast<const uint32_t*>(p);
    f[0] = __uint_as_float(v << 16);
    f[1] = __uint_as_float(v & 0xffff0000u);
  } else {
#pragma unroll
    for (int j = 0; j < EPL; ++j) f[j] = bf16_bits_to_f32(p[j]);
  }
}

// A value as the cache holds it (bf16 caches round to nearest even).
__device__ __forceinline__ float as_cached(float v, const float*) { return v; }
__device__ __forceinline__ float as_cached(float v, const uint16_t*) {
  uint16_t h;
  store_narrow(&h, v);
  return bf16_bits_to_f32(h);
}

// The decoding step's RoPE and cache write, done by the attention kernel itself (one query row
// per stream, T = 1): each block rotates its q head and its kv head's new k (as rope_kv_write_kernel
// does) into shared memory; the split that holds the newest position adds that key (k and v
// rounded as the cache holds them) after walking the cached ones (a per-key test in the walk
// measured ~10% slower at the full context), and the block of a kv head's first q head in that
// split writes k and v to the cache. No block reads that slot from the cache, so nothing waits.
template <typename TC>
struct FusedRope {
  const float* freqs = nullptr;  // null: no rotation
  int64_t half = 0, im_off = 0, stride = 0, QD = 0;
  TC* kw = nullptr;
  TC* vw = nullptr;
};

// part (split-K only): per (row, head, split) [max, sum, acc[D]]. W warps per block.
template <int EPL, typename TC, bool FUSED, int W>
__global__ void __launch_bounds__(W * 32)
    attention_kernel(const float* __restrict__ qkv, const TC* __restrict__ kc, const TC* __restrict__ vc,
                     const int64_t* __restrict__ pos, const int64_t* __restrict__ lo, int64_t T, int H, int rep,
                     int D, int64_t R, int64_t KD, int64_t cap, float scale, int splits,
                     float* __restrict__ out, float* __restrict__ part, FusedRope<TC> fz) {
  pdl_trigger();
  pdl_wait();
  __shared__ float sm_m[W], sm_l[W];
  __shared__ float sm_acc[W][EPL * 32];
  __shared__ float sm_q[FUSED ? kMaxHeadDim : 1], sm_k[FUSED ? kMaxHeadDim : 1], sm_v[FUSED ? kMaxHeadDim : 1];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t r = blockIdx.x;
  const int h = blockIdx.y, split = blockIdx.z;
  const int64_t b = r / T, p = pos[r], l = max(lo[r], int64_t{0}), n = p - l + 1;
  // Each row's own window is spread over the splits, so that the launch shape depends only on
  // the cache's capacity (a recorded graph replays at any position).
  const int64_t chunk = (n + splits - 1) / splits;
  const int64_t j0 = split * chunk, j1 = min(n, j0 + chunk);
  const int kvh = h / rep;
  // A head's values: lane-contiguous (d = lane·EPL + e, one vector load per row) when D fills
  // the warp exactly, else strided (d = e·32 + lane).
  const bool contig = D == EPL * 32;
  float q[EPL];
  const float* qr = qkv + r * R + static_cast<int64_t>(h) * D;
  if constexpr (FUSED) {
    const float* kr = qkv + r * R + fz.QD + static_cast<int64_t>(kvh) * D;
    for (int64_t i = threadIdx.x; i < fz.half; i += blockDim.x) {
      const int64_t a0 = i * fz.stride, a1 = a0 + fz.im_off;
      float qre = qr[a0], qim = qr[a1], kre = kr[a0], kim = kr[a1];
      if (fz.freqs) {
        const float a = fz.freqs[i] * static_cast<float>(p), c = cosf(a), sn = sinf(a);
        const float nq = qre * c - qim * sn, nqi = qre * sn + qim * c;
        const float nk = kre * c - kim * sn, nki = kre * sn + kim * c;
        qre = nq;
        qim = nqi;
        kre = nk;
        kim = nki;
      }
      sm_q[a0] = qre;
      sm_q[a1] = qim;
      sm_k[a0] = as_cached(kre, kc);
      sm_k[a1] = as_cached(kim, kc);
    }
    for (int d = threadIdx.x; d < D; d += blockDim.x) sm_v[d] = as_cached(kr[KD + d], kc);
    __syncthreads();
    const int64_t owner = (n - 1) / chunk;  // the split that holds the newest position
    if (h % rep == 0 && split == owner) {
      const int64_t at = (b * (KD / D) + kvh) * cap * D + (p % cap) * D;
      for (int d = threadIdx.x; d < D; d += blockDim.x) {
        store_narrow(fz.kw + at + d, sm_k[d]);
        store_narrow(fz.vw + at + d, sm_v[d]);
      }
    }
  }
#pragma unroll
  for (int e = 0; e < EPL; ++e) {
    const int d = contig ? lane * EPL + e : e * 32 + lane;
    q[e] = d < D ? (FUSED ? sm_q[d] : qr[d]) : 0.f;
  }
  // The cache is [B, KH, cap, D]: this head's ring is contiguous.
  const int64_t ring = (b * (KD / D) + kvh) * cap * D;
  const TC* kb = kc + ring;
  const TC* vb = vc + ring;
  const int64_t s0 = l % cap;  // positions [l, p] are slots s0, s0+1, ... wrapping at cap
  float m = -INFINITY, lsum = 0.f, acc[EPL];
#pragma unroll
  for (int e = 0; e < EPL; ++e) acc[e] = 0.f;

  // FUSED: the newest position is not in the cache yet; its split's first warp adds it last.
  const int64_t jc = FUSED ? min(j1, n - 1) : j1;
  for (int64_t j = j0 + warp; j < jc; j += W * kKeysPerIter) {
    float sc[kKeysPerIter], vv[kKeysPerIter][EPL];
#pragma unroll
    for (int u = 0; u < kKeysPerIter; ++u) {
      const int64_t jj = j + u * W;
      int64_t slot = s0 + (jj < jc ? jj : j);
      if (slot >= cap) slot -= cap;
      const TC* kr = kb + slot * D;
      const TC* vr = vb + slot * D;
      float dot = 0.f;
      if (contig) {
        float kk[EPL];
        load_vec<EPL>(kr + lane * EPL, kk);
        load_vec<EPL>(vr + lane * EPL, vv[u]);
#pragma unroll
        for (int e = 0; e < EPL; ++e) dot = fmaf(q[e], kk[e], dot);
      } else {
#pragma unroll
        for (int e = 0; e < EPL; ++e) {
          const int d = e * 32 + lane;
          const bool in = d < D;
          dot = fmaf(q[e], in ? load_widen(kr + d) : 0.f, dot);
          vv[u][e] = in ? load_widen(vr + d) : 0.f;
        }
      }
      sc[u] = dot;
    }
    float mx = m;
#pragma unroll
    for (int u = 0; u < kKeysPerIter; ++u) {
      sc[u] = j + u * W < jc ? warp_sum(sc[u]) * scale : -INFINITY;
      mx = fmaxf(mx, sc[u]);
    }
    const float corr = expf(m - mx);  // 0 on the first keys (m = -inf)
    lsum *= corr;
#pragma unroll
    for (int e = 0; e < EPL; ++e) acc[e] *= corr;
#pragma unroll
    for (int u = 0; u < kKeysPerIter; ++u) {
      const float pe = expf(sc[u] - mx);  // 0 for keys past the range
      lsum += pe;
#pragma unroll
      for (int e = 0; e < EPL; ++e) acc[e] = fmaf(pe, vv[u][e], acc[e]);
    }
    m = mx;
  }
  if constexpr (FUSED) {
    if (warp == 0 && n - 1 >= j0 && n - 1 < j1) {  // this step's key and value, last
      float dot = 0.f, vn[EPL];
#pragma unroll
      for (int e = 0; e < EPL; ++e) {
        const int d = contig ? lane * EPL + e : e * 32 + lane;
        const bool in = d < D;
        dot = fmaf(q[e], in ? sm_k[d] : 0.f, dot);
        vn[e] = in ? sm_v[d] : 0.f;
      }
      const float sn = warp_sum(dot) * scale, mx = fmaxf(m, sn);
      const float corr = expf(m - mx), pe = expf(sn - mx);
      lsum = lsum * corr + pe;
#pragma unroll
      for (int e = 0; e < EPL; ++e) acc[e] = fmaf(pe, vn[e], acc[e] * corr);
      m = mx;
    }
  }

  if (lane == 0) {
    sm_m[warp] = m;
    sm_l[warp] = lsum;
  }
#pragma unroll
  for (int e = 0; e < EPL; ++e) sm_acc[warp][e * 32 + lane] = acc[e];
  __syncthreads();
  float M = -INFINITY;
#pragma unroll
  for (int w = 0; w < W; ++w) M = fmaxf(M, sm_m[w]);
  float wt[W], L = 0.f;
#pragma unroll
  for (int w = 0; w < W; ++w) {
    wt[w] = sm_m[w] == -INFINITY ? 0.f : expf(sm_m[w] - M);
    L += sm_l[w] * wt[w];
  }
  const int64_t base = ((r * H + h) * splits + split) * (D + 2);
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    // sm_acc holds each warp's values in its lanes' order: d's slot in that order.
    const int i = contig ? (d % EPL) * 32 + d / EPL : d;
    float A = 0.f;
#pragma unroll
    for (int w = 0; w < W; ++w) A += sm_acc[w][i] * wt[w];
    if (splits == 1)
      out[(r * H + h) * D + d] = A / L;
    else
      part[base + 2 + d] = A;
  }
  if (splits > 1 && threadIdx.x == 0) {
    part[base] = M;
    part[base + 1] = L;
  }
}

__global__ void attention_combine_kernel(const float* __restrict__ part, float* __restrict__ out, int H, int D,
                                         int splits) {
  pdl_trigger();
  pdl_wait();
  const int64_t r = blockIdx.x;
  const int h = blockIdx.y;
  const float* pr = part + (r * H + h) * splits * static_cast<int64_t>(D + 2);
  float M = -INFINITY;
  for (int s = 0; s < splits; ++s) M = fmaxf(M, pr[s * (D + 2)]);
  float L = 0.f;
  for (int s = 0; s < splits; ++s) {
    const float ms = pr[s * (D + 2)];
    if (ms != -INFINITY) L += pr[s * (D + 2) + 1] * expf(ms - M);
  }
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float A = 0.f;
    for (int s = 0; s < splits; ++s) {
      const float ms = pr[s * (D + 2)];
      if (ms != -INFINITY) A += pr[s * (D + 2) + 2 + d] * expf(ms - M);
    }
    out[(r * H + h) * D + d] = A / L;
  }
}

// fz: the fused RoPE + cache write (null: the cache already holds this step's keys).
template <int EPL, typename TC>
void launch_attention(Impl& im, dim3 grid, const float* qkv, const TC* kc, const TC* vc, const FusedRope<TC>* fz,
                      const int64_t* pos, const int64_t* lo, int64_t T, int H, int rep, int D, int64_t R, int64_t KD,
                      int64_t cap, float scale, int splits, float* out, float* part) {
  if (fz)
    launch_chain(im, "attention", attention_kernel<EPL, TC, true, kAttnWarps>, grid, dim3(kAttnWarps * 32), 0, qkv,
                 kc, vc, pos, lo, T, H, rep, D, R, KD, cap, scale, splits, out, part, *fz);
  else if (splits == 1 && static_cast<int64_t>(grid.x) * grid.y < im.sms)
    // Fewer blocks than SMs (Mimi's 2 rows x 8 heads): more warps share each window, so that a
    // warp walks a few keys rather than ~60 one round trip after another.
    launch_chain(im, "attention", attention_kernel<EPL, TC, false, kWideAttnWarps>, grid, dim3(kWideAttnWarps * 32),
                 0, qkv, kc, vc, pos, lo, T, H, rep, D, R, KD, cap, scale, splits, out, part, FusedRope<TC>());
  else
    launch_chain(im, "attention", attention_kernel<EPL, TC, false, kAttnWarps>, grid, dim3(kAttnWarps * 32), 0, qkv,
                 kc, vc, pos, lo, T, H, rep, D, R, KD, cap, scale, splits, out, part, FusedRope<TC>());
}

}  // namespace
}  // namespace cuda

using cuda::f32_of;
using cuda::grid_for;
using cuda::launch;

namespace {
// RoPE frequencies exactly as the CPU computes them (on the host, std::exp on floats), once.
const float* rope_freqs(cuda::Impl& im, int64_t D, float max_period, const char* op) {
  uint32_t bits;
  std::memcpy(&bits, &max_period, 4);
  const int64_t half = D / 2;
  return im.table(
      "rope:" + std::to_string(D) + ":" + std::to_string(bits),
      [&] {
        std::vector<float> f(static_cast<size_t>(half));
        const float step = static_cast<float>(-std::log(static_cast<double>(max_period)) * 2.0 / D);
        for (int64_t i = 0; i < half; ++i) f[i] = std::exp(static_cast<float>(i) * step);
        return f;
      },
      op);
}
}  // namespace

void CudaBackend::rope(Tensor& qkv, const AttnShape& sh, float max_period, bool interleaved,
                       const std::vector<int64_t>& pos) {
  impl_->enter(__func__);
  const char* op = "rope";
  const int64_t R = sh.row(), rows = R ? qkv.numel() / R : 0, D = sh.head_dim, half = D / 2;
  MOSHI_CHECK(static_cast<int64_t>(pos.size()) == rows && qkv.numel() == rows * R, "rope: ", pos.size(),
              " positions for ", rows, " rows");
  if (rows == 0 || half == 0) return;
  cuda::Impl& im = *impl_;
  const float* freqs = rope_freqs(im, D, max_period, op);
  const int64_t* dpos = im.put_args({&pos}, op);
  const int64_t heads_qk = sh.heads + sh.kv_heads;
  launch(im, op, cuda::rope_kernel, dim3(grid_for(im, rows * heads_qk * half)), dim3(256), 0, f32_of(qkv, op, "qkv"),
         dpos, freqs, rows, R, heads_qk, D, half, interleaved ? int64_t{1} : half,
         interleaved ? int64_t{2} : int64_t{1});
}

KvCache CudaBackend::new_kv_cache(DType dtype, int batch, int64_t capacity, int kv_heads, int head_dim) {
  return KvCache{empty(dtype, {batch, kv_heads, capacity, head_dim}), empty(dtype, {batch, kv_heads, capacity, head_dim}),
                 capacity};
}

void CudaBackend::rope_kv_write(Tensor& qkv, KvCache& cache, const AttnShape& sh, bool with_rope, float max_period,
                                bool interleaved, int batch, const std::vector<int64_t>& pos) {
  if (sh.head_dim % 2 != 0) {  // no pairs to rotate in one pass: the two ops
    Backend::rope_kv_write(qkv, cache, sh, with_rope, max_period, interleaved, batch, pos);
    return;
  }
  impl_->enter(__func__);
  const char* op = "rope_kv_write";
  const int64_t R = sh.row(), KD = static_cast<int64_t>(sh.kv_heads) * sh.head_dim,
                QD = static_cast<int64_t>(sh.heads) * sh.head_dim, rows = R ? qkv.numel() / R : 0,
                D = sh.head_dim, half = D / 2;
  MOSHI_CHECK(batch > 0 && rows % batch == 0 && static_cast<int64_t>(pos.size()) == rows && cache.capacity > 0 &&
                  cache.k.numel() == batch * cache.capacity * KD && cache.v.numel() == cache.k.numel() &&
                  D % 2 == 0,
              "rope_kv_write: ", rows, " rows, ", pos.size(), " positions, batch ", batch, ", cache ",
              shape_str(cache.k.shape()));
  for (int64_t p : pos) MOSHI_CHECK(p >= 0, "kv_write: negative position ", p);
  if (rows == 0) return;
  cuda::Impl& im = *impl_;
  const float* freqs = nullptr;
  if (with_rope) freqs = rope_freqs(im, D, max_period, op);
  const int64_t* dpos = im.put_args({&pos}, op);
  const int64_t heads_qk = sh.heads + sh.kv_heads, total = rows * heads_qk * half + rows * KD;
  const int64_t im_off = interleaved ? 1 : half, stride = interleaved ? 2 : 1;
  float* pq = f32_of(qkv, op, "qkv");
  cuda::need_cuda(cache.k, op, "key cache");
  cuda::need_cuda(cache.v, op, "value cache");
  if (cache.k.dtype() == DType::BF16)
    launch(im, op, cuda::rope_kv_write_kernel<uint16_t>, dim3(grid_for(im, total)), dim3(256), 0, pq,
           cache.k.ptr<uint16_t>(), cache.v.ptr<uint16_t>(), dpos, freqs, with_rope ? 1 : 0, rows, rows / batch, R,
           sh.heads, heads_qk, D, half, im_off, stride, QD, KD, cache.capacity);
  else
    launch(im, op, cuda::rope_kv_write_kernel<float>, dim3(grid_for(im, total)), dim3(256), 0, pq,
           f32_of(cache.k, op, "key cache"), f32_of(cache.v, op, "value cache"), dpos, freqs, with_rope ? 1 : 0, rows,
           rows / batch, R, sh.heads, heads_qk, D, half, im_off, stride, QD, KD, cache.capacity);
}

void CudaBackend::kv_write(KvCache& cache, const Tensor& qkv, const AttnShape& sh, int batch,
                           const std::vector<int64_t>& pos) {
  impl_->enter(__func__);
  const char* op = "kv_write";
  const int64_t R = sh.row(), KD = static_cast<int64_t>(sh.kv_heads) * sh.head_dim,
                QD = static_cast<int64_t>(sh.heads) * sh.head_dim, rows = R ? qkv.numel() / R : 0;
  MOSHI_CHECK(batch > 0 && rows % batch == 0 && static_cast<int64_t>(pos.size()) == rows && cache.capacity > 0 &&
                  cache.k.numel() == batch * cache.capacity * KD && cache.v.numel() == cache.k.numel(),
              "kv_write: ", rows, " rows, ", pos.size(), " positions, batch ", batch, ", cache ",
              shape_str(cache.k.shape()));
  for (int64_t p : pos) MOSHI_CHECK(p >= 0, "kv_write: negative position ", p);
  cuda::Impl& im = *impl_;
  const int64_t* dpos = im.put_args({&pos}, op);
  if (cache.k.dtype() == DType::BF16) {  // a bf16 cache halves what long windows read
    cuda::need_cuda(cache.k, op, "key cache");
    cuda::need_cuda(cache.v, op, "value cache");
    launch(im, op, cuda::kv_write_kernel<uint16_t>, dim3(grid_for(im, rows * KD)), dim3(256), 0,
           f32_of(qkv, op, "qkv"), cache.k.ptr<uint16_t>(), cache.v.ptr<uint16_t>(), dpos, rows, rows / batch, R, QD,
           KD, int64_t{sh.head_dim}, cache.capacity);
    return;
  }
  launch(im, op, cuda::kv_write_kernel<float>, dim3(grid_for(im, rows * KD)), dim3(256), 0, f32_of(qkv, op, "qkv"),
         f32_of(cache.k, op, "key cache"), f32_of(cache.v, op, "value cache"), dpos, rows, rows / batch, R, QD, KD,
         int64_t{sh.head_dim}, cache.capacity);
}

namespace {
// RoPE settings of a fused decoding-step attention.
struct RopeSpec {
  bool with_rope;
  float max_period;
  bool interleaved;
};

// attention(), and with `rs` (one query row per stream) the RoPE and cache write before it, done
// inside the attention kernel.
void run_attention(cuda::Impl& im, const char* op, const Tensor& qkv, const KvCache& cache, const AttnShape& sh,
                   int batch, const std::vector<int64_t>& pos, const std::vector<int64_t>& lo, Tensor& out,
                   const RopeSpec* rs) {
  const int H = sh.heads, D = sh.head_dim;
  const int64_t R = sh.row(), KD = static_cast<int64_t>(sh.kv_heads) * D, rows = R ? qkv.numel() / R : 0,
                cap = cache.capacity;
  MOSHI_CHECK(batch > 0 && rows % batch == 0 && sh.kv_heads > 0 && H % sh.kv_heads == 0 &&
                  static_cast<int64_t>(pos.size()) == rows && static_cast<int64_t>(lo.size()) == rows &&
                  out.numel() == rows * H * D && cap > 0 && cache.k.numel() == batch * cap * KD &&
                  cache.v.numel() == cache.k.numel(),
              "attention: ", rows, " rows, batch ", batch, ", output ", shape_str(out.shape()), ", cache ",
              shape_str(cache.k.shape()));
  MOSHI_CHECK(D >= 1 && D <= cuda::kMaxHeadDim, "cuda attention: head_dim ", D, " is not supported (at most ",
              cuda::kMaxHeadDim, ")");
  MOSHI_CHECK(rows <= INT32_MAX && H <= 65535, "cuda attention: too many rows or heads");
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t l = std::max<int64_t>(lo[r], 0);
    MOSHI_CHECK(pos[r] >= 0, "kv_write: negative position ", pos[r]);
    MOSHI_CHECK(pos[r] - l < cap, "attention: window of position ", pos[r], " exceeds the cache capacity ", cap);
    MOSHI_CHECK(pos[r] >= l, "attention: empty window [", lo[r], ", ", pos[r], "]");
  }
  if (rows == 0) return;
  // Split windows as long as the cache when batch x heads blocks alone are too few to keep
  // enough reads in flight (~6 blocks of 4 warps per SM). The split count follows the
  // capacity, never the positions, so that a recorded stage keeps its launch shape; each row
  // divides its own window among the splits. Caches of a few hundred keys (Mimi's) stay whole:
  // a second launch to combine the splits costs more than the longer walk.
  const int64_t blocks = rows * H, want = 6 * static_cast<int64_t>(im.sms);
  const int64_t by_keys = (cap + cuda::kMinKeysPerSplit - 1) / cuda::kMinKeysPerSplit;
  int splits = 1;
  if (blocks < want && by_keys >= cuda::kMinSplits) {
    splits = static_cast<int>(
        std::max<int64_t>(1, std::min<int64_t>({(want + blocks - 1) / blocks, by_keys, cuda::kMaxSplits})));
  }
  const float* freqs = rs && rs->with_rope ? rope_freqs(im, D, rs->max_period, op) : nullptr;
  const int64_t* args = im.put_args({&pos, &lo}, op);
  float* part = splits > 1 ? im.ensure_t<float>(cuda::kAttnPart, rows * H * splits * (D + 2), op) : nullptr;
  const float scale = 1.f / std::sqrt(static_cast<float>(D));
  const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>(H), static_cast<unsigned>(splits));
  const float* pq = f32_of(qkv, op, "qkv");
  cuda::need_cuda(cache.k, op, "key cache");
  cuda::need_cuda(cache.v, op, "value cache");
  float* po = f32_of(out, op, "output");
  const int64_t T = rows / batch;
  const int rep = H / sh.kv_heads;
  const int64_t half = D / 2;
  auto go = [&](auto* kc, auto* vc) {
    using TC = std::remove_const_t<std::remove_pointer_t<decltype(kc)>>;
    cuda::FusedRope<TC> fz;
    if (rs) {
      fz.freqs = freqs;
      fz.half = half;
      fz.im_off = rs->interleaved ? 1 : half;
      fz.stride = rs->interleaved ? 2 : 1;
      fz.QD = static_cast<int64_t>(H) * D;
      fz.kw = kc;
      fz.vw = vc;
    }
    const cuda::FusedRope<TC>* pf = rs ? &fz : nullptr;
    if (D <= 32)
      cuda::launch_attention<1, TC>(im, grid, pq, kc, vc, pf, args, args + rows, T, H, rep, D, R, KD, cap, scale,
                                    splits, po, part);
    else if (D <= 64)
      cuda::launch_attention<2, TC>(im, grid, pq, kc, vc, pf, args, args + rows, T, H, rep, D, R, KD, cap, scale,
                                    splits, po, part);
    else if (D <= 128)
      cuda::launch_attention<4, TC>(im, grid, pq, kc, vc, pf, args, args + rows, T, H, rep, D, R, KD, cap, scale,
                                    splits, po, part);
    else
      cuda::launch_attention<8, TC>(im, grid, pq, kc, vc, pf, args, args + rows, T, H, rep, D, R, KD, cap, scale,
                                    splits, po, part);
  };
  if (cache.k.dtype() == DType::BF16)
    go(cache.k.ptr<uint16_t>(), cache.v.ptr<uint16_t>());
  else
    go(f32_of(cache.k, op, "key cache"), f32_of(cache.v, op, "value cache"));
  if (splits > 1)
    // Plain launch: started early, its pdl_trigger would let the next product's blocks take SM
    // slots while the split attention before it still runs (measured +0.3 ms a step at batch 1).
    launch(im, op, cuda::attention_combine_kernel, dim3(static_cast<unsigned>(rows), static_cast<unsigned>(H)),
           dim3(128), 0, part, po, H, D, splits);
}
}  // namespace

void CudaBackend::attention(const Tensor& qkv, const KvCache& cache, const AttnShape& sh, int batch,
                            const std::vector<int64_t>& pos, const std::vector<int64_t>& lo, Tensor& out) {
  impl_->enter(__func__);
  run_attention(*impl_, "attention", qkv, cache, sh, batch, pos, lo, out, nullptr);
}

void CudaBackend::rope_kv_attention(Tensor& qkv, KvCache& cache, const AttnShape& sh, bool with_rope,
                                    float max_period, bool interleaved, int batch, const std::vector<int64_t>& pos,
                                    const std::vector<int64_t>& lo, Tensor& out) {
  const int64_t R = sh.row(), rows = R ? qkv.numel() / R : 0;
  if (rows != batch || sh.head_dim % 2 != 0) {  // several rows per stream, or no pairs: the two ops
    Backend::rope_kv_attention(qkv, cache, sh, with_rope, max_period, interleaved, batch, pos, lo, out);
    return;
  }
  impl_->enter(__func__);
  const RopeSpec rs{with_rope, max_period, interleaved};
  run_attention(*impl_, "rope_kv_attention", qkv, cache, sh, batch, pos, lo, out, &rs);
}

}  // namespace moshi
