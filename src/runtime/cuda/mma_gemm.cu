// Few-row products with bf16 weights on the tensor cores: y[N, out] = x[N, in] · wᵀ (+ bias) for
// 2 <= N <= 32 per pass, reading the weights once (the LM's decoding step at batch 2..32).
//
// Each warp owns one 16-row tile of w (two for the large products from 5 rows on: the
// activations it loads serve both) and walks `in` in chunks of 32 with mma.m16n8k16 (bf16 in,
// f32 accumulate); the N activation rows are the n = 8 columns of 1, 2 or 4 tiles. The k order
// inside a chunk is permuted so that every lane reads its weights as one 16-byte load per row
// (8 consecutive values) and its activations as two float4 loads: lane (g, t) = (lane/4, lane%4)
// supplies fragment k pairs {2t, 2t+1} / {2t+8, 2t+9} of MMA m from elements 8t + 4m + {0,1} /
// {2,3}; A and B use the same permutation, so the sum over k is unchanged.
//
// Activations stay f32 in effect: each is split into bf16 hi + lo (hi = rn(x), lo = rn(x - hi))
// and both halves are multiplied, so the product keeps ~16 bits of x's mantissa (relative error
// ~4e-6 per term, far inside the tolerance against the CPU) while the weights are read once.
// From 9 rows on, a small kernel splits the activations once per product into exactly the
// fragments the lanes load (`split_kernel`), so that the product's warps only load and multiply:
// split in every warp, the activations' loads and conversions were ~90% of the instructions at
// 32 rows, and the kernel was issue-bound at ~1.3 TB/s.
#include <cuda_bf16.h>

#include "runtime/cuda/common.cuh"

namespace moshi {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kChunksInFlight = 4;  // 2 x 16-byte weight loads per chunk per lane: 8 in flight


__device__ __forceinline__ void mma_bf16(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// 4 bytes global -> shared without registers (cp.async), and the wait for this thread's copies.
__device__ __forceinline__ void copy_async4(float* dst, const float* src) {
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(d), "l"(src) : "memory");
}
__device__ __forceinline__ void copy_async_wait() { asm volatile("cp.async.wait_all;" ::: "memory"); }

// x [N, in] as the fragments mma_gemm_kernel's lanes use (NT tiles of 8 rows; rows past N are
// zero): uint4 ((c·NT + j)·2 + h)·32 + lane holds lane (g, t)'s four bf16 pairs of row j·8 + g,
// elements c·32 + 8t .. +7, as hi (h = 0) or lo (h = 1) halves.
__global__ void split_kernel(const float* x, uint4* __restrict__ xs, int64_t N, int64_t in, int nt) {
  pdl_trigger();
  pdl_wait();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= in / 32 * nt * 32) return;
  const int lane = static_cast<int>(i & 31), g = lane >> 2, t = lane & 3;
  const int64_t cj = i >> 5, c = cj / nt, n = (cj % nt) * 8 + g;
  float4 p = make_float4(0.f, 0.f, 0.f, 0.f), q = p;
  if (n < N) {
    p = *reinterpret_cast<const float4*>(x + n * in + c * 32 + 8 * t);
    q = *reinterpret_cast<const float4*>(x + n * in + c * 32 + 8 * t + 4);
  }
  uint4 h, l;
  split2(p.x, p.y, h.x, l.x);
  split2(p.z, p.w, h.y, l.y);
  split2(q.x, q.y, h.z, l.z);
  split2(q.z, q.w, h.w, l.w);
  xs[(cj * 2) * 32 + lane] = h;
  xs[(cj * 2 + 1) * 32 + lane] = l;
}

// NT tiles of 8 activation rows; R tiles of weight rows per warp (the activations loaded for a
// chunk are used for all R). Requires in % 32 == 0 and 16-byte aligned x and w rows.
// GLU (a gated feed-forward's first product, w [2·out, in]: gate rows then up rows): a warp's
// tile is gate rows i0..i0+7 over up rows out+i0..out+i0+7, so each lane holds the gate and up
// sums of the same outputs and writes y[n, i] = act(gate) ⊙ up (as gated_kernel computes it).
// RMS: the activation rows are RMS-normalized with alpha f.nw on the way, as gemv_kernel does
// it (x ⊙ alpha into the products, the squares of x summed per row, the results scaled by each
// row's 1 / sqrt(mean(x²) + eps) at the end). ADD: y += f.scale ⊙ result (not with GLU).
// PRE: the activations come split, from split_kernel (xs; x unused). Used without RMS and ADD.
// Blocks split `in` further by gridDim.y (not with RMS): each writes its group's sums to `gpart`,
// and the last of a group's gridDim.y blocks to finish (`gcount`, back to 0 after) adds them in
// block order and runs the epilogue, so that results do not depend on which finished first.
template <int NT, int R, bool GLU, bool RMS, bool ADD, bool PRE>
__global__ void __launch_bounds__(kThreads) mma_gemm_kernel(const float* __restrict__ x,
                                                            const uint4* __restrict__ xs,
                                                            const uint16_t* __restrict__ w,
                                                            const float* __restrict__ bias, float* __restrict__ y,
                                                            int64_t N, int64_t in, int64_t out, int ks, Act act,
                                                            ProductFusion f, float* __restrict__ gpart,
                                                            int* __restrict__ gcount) {
  constexpr int CIF = kChunksInFlight / R;  // the weight bytes in flight per warp do not depend on R
  constexpr int TR = GLU ? 8 : 16;          // output rows of a tile
  constexpr bool kAsyncOld = ADD && R == 1;  // the add's old values copied ahead into `part`
  __shared__ float part[kWarps][NT * 4 + (RMS ? NT : 0)][32];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int groups = kWarps / ks, gi = warp / ks, s = warp % ks;
  const int64_t row0 = (static_cast<int64_t>(blockIdx.x) * groups + gi) * (R * TR);
  const int KB = static_cast<int>(gridDim.y), kb = static_cast<int>(blockIdx.y);
  const int64_t nchunks = in / 32, per_block = (nchunks + KB - 1) / KB;
  const int64_t cb0 = min(nchunks, kb * per_block), cb1 = min(nchunks, cb0 + per_block);
  const int64_t per = (cb1 - cb0 + ks - 1) / ks;
  const int64_t c_begin = cb0 + s * per, c_end = min(cb1, c_begin + per);
  // Rows past the end read the last row (their results are not written).
  const uint4* wa[R];
  const uint4* wb[R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t ra = min(row0 + r * TR + g, out - 1), rb = GLU ? out + ra : min(row0 + r * TR + g + 8, out - 1);
    wa[r] = reinterpret_cast<const uint4*>(w + ra * in) + t;
    wb[r] = reinterpret_cast<const uint4*>(w + rb * in) + t;
  }
  const float* xr[NT];
  bool xin[NT];
#pragma unroll
  for (int j = 0; j < NT; ++j) {
    const int64_t n = j * 8 + g;
    xin[j] = n < N;
    xr[j] = PRE ? nullptr : x + min(n, N - 1) * in + 8 * t;
  }
  float acc[R][NT][4], ss[NT];
#pragma unroll
  for (int j = 0; j < NT; ++j) {
    ss[j] = 0.f;
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[r][j][e] = 0.f;
  }

  pdl_trigger();
  // The first weights are loaded before waiting for the previous kernel (it never writes them).
  uint4 va[CIF][R], vb[CIF][R];
#pragma unroll
  for (int u = 0; u < CIF; ++u) {
    const bool ok = c_begin + u < c_end;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      va[u][r] = ok ? ld_stream_early(wa[r] + (c_begin + u) * 4) : make_uint4(0u, 0u, 0u, 0u);
      vb[u][r] = ok ? ld_stream_early(wb[r] + (c_begin + u) * 4) : make_uint4(0u, 0u, 0u, 0u);
    }
  }
  pdl_wait();
  // The epilogue's add: the old values this lane will write are copied now (asynchronously,
  // holding no registers through the loop), off the tail, into the warp's own slot of `part`
  // (which the split sum leaves to the first warp of each group).
  if (kAsyncOld && s == 0)
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t row = row0 + g + (e >= 2 ? 8 : 0), n = j * 8 + 2 * t + (e & 1);
        if (row < out && n < N) copy_async4(&part[warp][j * 4 + e][lane], y + n * out + row);
      }
  for (int64_t c = c_begin; c < c_end; c += CIF) {
    if (c != c_begin) {
#pragma unroll
      for (int u = 0; u < CIF; ++u) {
        const bool ok = c + u < c_end;
#pragma unroll
        for (int r = 0; r < R; ++r) {
          va[u][r] = ok ? ld_stream(wa[r] + (c + u) * 4) : make_uint4(0u, 0u, 0u, 0u);
          vb[u][r] = ok ? ld_stream(wb[r] + (c + u) * 4) : make_uint4(0u, 0u, 0u, 0u);
        }
      }
    }
#pragma unroll
    for (int u = 0; u < CIF; ++u) {
      if (c + u >= c_end) break;
      float4 a = make_float4(0.f, 0.f, 0.f, 0.f), b = a;
      if (RMS) {
        a = __ldg(reinterpret_cast<const float4*>(f.nw + (c + u) * 32 + 8 * t));
        b = __ldg(reinterpret_cast<const float4*>(f.nw + (c + u) * 32 + 8 * t + 4));
      }
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        uint32_t h0, l0, h1, l1, h2, l2, h3, l3;
        if (PRE) {
          const uint4* fr = xs + ((c + u) * NT + j) * 64 + lane;
          const uint4 h = __ldg(fr), l = __ldg(fr + 32);
          h0 = h.x, h1 = h.y, h2 = h.z, h3 = h.w, l0 = l.x, l1 = l.y, l2 = l.z, l3 = l.w;
        } else {
          float4 p = make_float4(0.f, 0.f, 0.f, 0.f), q = p;
          if (xin[j]) {
            p = __ldg(reinterpret_cast<const float4*>(xr[j] + (c + u) * 32));
            q = __ldg(reinterpret_cast<const float4*>(xr[j] + (c + u) * 32 + 4));
          }
          if (RMS) {
            ss[j] = fmaf(p.x, p.x, fmaf(p.y, p.y, fmaf(p.z, p.z, fmaf(p.w, p.w, ss[j]))));
            ss[j] = fmaf(q.x, q.x, fmaf(q.y, q.y, fmaf(q.z, q.z, fmaf(q.w, q.w, ss[j]))));
            p = make_float4(p.x * a.x, p.y * a.y, p.z * a.z, p.w * a.w);
            q = make_float4(q.x * b.x, q.y * b.y, q.z * b.z, q.w * b.w);
          }
          split2(p.x, p.y, h0, l0);
          split2(p.z, p.w, h1, l1);
          split2(q.x, q.y, h2, l2);
          split2(q.z, q.w, h3, l3);
        }
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const uint4 wa4 = va[u][r], wb4 = vb[u][r];
          mma_bf16(acc[r][j], wa4.x, wb4.x, wa4.y, wb4.y, h0, h1);
          mma_bf16(acc[r][j], wa4.x, wb4.x, wa4.y, wb4.y, l0, l1);
          mma_bf16(acc[r][j], wa4.z, wb4.z, wa4.w, wb4.w, h2, h3);
          mma_bf16(acc[r][j], wa4.z, wb4.z, wa4.w, wb4.w, l2, l3);
        }
      }
    }
  }
  if (RMS)  // row j·8 + g's squares: over the 4 lanes of the row, then (below) the split warps
#pragma unroll
    for (int j = 0; j < NT; ++j) {
      ss[j] += __shfl_xor_sync(0xffffffffu, ss[j], 1);
      ss[j] += __shfl_xor_sync(0xffffffffu, ss[j], 2);
    }
  if (ks > 1) {  // uniform over the block: the first warp of each group adds the others' parts,
                 // one weight tile at a time
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (r > 0) __syncthreads();  // the previous tile's parts are read
      if (!kAsyncOld || s != 0)    // (kAsyncOld: the first warp's slot holds its old values)
#pragma unroll
        for (int j = 0; j < NT; ++j) {
#pragma unroll
          for (int e = 0; e < 4; ++e) part[warp][j * 4 + e][lane] = acc[r][j][e];
          if (RMS && r == 0) part[warp][NT * 4 + j][lane] = ss[j];
        }
      __syncthreads();
      if (s == 0)
#pragma unroll
        for (int j = 0; j < NT; ++j) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            float v = kAsyncOld ? acc[r][j][e] : 0.f;
            for (int k = kAsyncOld ? 1 : 0; k < ks; ++k) v += part[warp + k][j * 4 + e][lane];
            acc[r][j][e] = v;
          }
          if (RMS && r == 0) {  // (not with ADD: every warp wrote its part)
            float v = 0.f;
            for (int k = 0; k < ks; ++k) v += part[warp + k][NT * 4 + j][lane];
            ss[j] = v;
          }
        }
    }
    if (s != 0) return;
  }
  if constexpr (!RMS) {
    if (KB > 1) {  // this block's sums of its group, then the group's last block adds all in order
      constexpr int NV = R * NT * 4;
      const int64_t tasks = static_cast<int64_t>(gridDim.x) * groups;
      const int64_t task = static_cast<int64_t>(blockIdx.x) * groups + gi;
      float* mine = gpart + (kb * tasks + task) * NV * 32 + lane;
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int j = 0; j < NT; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) mine[((r * NT + j) * 4 + e) * 32] = acc[r][j][e];
      __threadfence();
      __syncwarp();
      int last = 0;
      if (lane == 0) {
        last = atomicAdd(&gcount[task], 1) + 1 == KB;
        if (last) gcount[task] = 0;
      }
      if (!__shfl_sync(0xffffffffu, last, 0)) {
        if (kAsyncOld) copy_async_wait();  // (no copy left in flight as the block ends)
        return;
      }
      __threadfence();
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int j = 0; j < NT; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) acc[r][j][e] = 0.f;
      for (int k = 0; k < KB; ++k) {
        const float* pk = gpart + (k * tasks + task) * NV * 32 + lane;
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
          for (int j = 0; j < NT; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[r][j][e] += __ldcg(pk + ((r * NT + j) * 4 + e) * 32);
      }
    }
  }
  if (RMS)  // column n = j·8 + 2t + (e & 1) of the C fragment is row n of x: lane n·4 has its sum
#pragma unroll
    for (int j = 0; j < NT; ++j) {
      const float inv = 1.f / sqrtf(ss[j] / static_cast<float>(in) + f.eps);
      const float i0 = __shfl_sync(0xffffffffu, inv, (2 * t) * 4), i1 = __shfl_sync(0xffffffffu, inv, (2 * t + 1) * 4);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        acc[r][j][0] *= i0;
        acc[r][j][1] *= i1;
        acc[r][j][2] *= i0;
        acc[r][j][3] *= i1;
      }
    }
  // C fragment: e = 0, 1 -> row g, columns 2t, 2t+1; e = 2, 3 -> row g + 8.
#pragma unroll
  for (int r = 0; r < R; ++r) {
    if (GLU) {
      const int64_t i = row0 + r * TR + g;
#pragma unroll
      for (int j = 0; j < NT; ++j)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int64_t n = j * 8 + 2 * t + e;
          if (i < out && n < N) {
            const float gate = acc[r][j][e] + (bias ? bias[i] : 0.f), up = acc[r][j][e + 2] + (bias ? bias[out + i] : 0.f);
            y[n * out + i] = apply_act(gate, act) * up;
          }
        }
    } else {
#pragma unroll
      for (int j = 0; j < NT; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int64_t row = row0 + r * TR + g + (e >= 2 ? 8 : 0), n = j * 8 + 2 * t + (e & 1);
          if (row < out && n < N) {
            const float v = acc[r][j][e] + (bias ? bias[row] : 0.f);
            if (ADD) {
              float old;
              if (kAsyncOld) {
                copy_async_wait();
                old = part[warp][j * 4 + e][lane];
              } else {
                old = y[n * out + row];
              }
              y[n * out + row] = old + (f.scale ? f.scale[row] * v : v);
            } else {
              y[n * out + row] = v;
            }
          }
        }
    }
  }
}

// GLU: `out` gated outputs of a [2·out, in] weight (see mma_gemm_kernel).
template <int NT, int R, bool GLU, bool RMS, bool ADD, bool PRE = false>
void launch_mma(Impl& im, const float* x, const uint4* xs, int64_t N, const uint16_t* w, const float* bias, float* y,
                  int64_t in, int64_t out, Act act, const ProductFusion& f, const char* op) {
  constexpr int CIF = kChunksInFlight / R;
  const int64_t tiles = GLU ? (out + 7) / 8 : (out + 15) / 16, tasks = (tiles + R - 1) / R, nchunks = in / 32;
  // Split `in` over the warps of a block (keeping a round of chunks in each slice): far enough that
  // a warp makes at most two rounds of loads where it can, then as far as fills the GPU's SMs
  // best to the end.
  int max_ks = 1, min_ks = 1;
  while (max_ks < kWarps && nchunks / (max_ks * 2) >= CIF) max_ks *= 2;
  while (min_ks < max_ks && (nchunks + min_ks - 1) / min_ks > 2 * CIF) min_ks *= 2;
  auto kernel = mma_gemm_kernel<NT, R, GLU, RMS, ADD, PRE>;
  const int ks =
      wave_split(im, (tasks + kWarps - 1) / kWarps, blocks_per_sm(im, kernel, kThreads, 0, op), min_ks, max_ks);
  const int64_t groups = kWarps / ks, blocks = (tasks + groups - 1) / groups;
  // Too few blocks to reach every SM (the depformer's 1024-row products: 64 blocks): blocks
  // split `in` further, as many as keep at most one block an SM and 2 chunks a warp. Measured
  // on an H100 (step ms, 3 runs each, same call): depformer at batch 32 3.31-3.44 against
  // 3.60-3.64 without, at batch 2 1.73-1.79 against 1.83-1.87, batches 8 and 16 equal.
  int kb = 1;
  if (!RMS)
    while (blocks * (kb + 1) <= im.sms && nchunks / ((kb + 1) * ks) >= 2) ++kb;
  float* gpart = nullptr;
  int* gcount = nullptr;
  if (kb > 1) {
    gpart = im.ensure_t<float>(kMmaPart, kb * blocks * groups * R * NT * 4 * 32, op);
    gcount = static_cast<int*>(im.ensure_zeroed(kMmaCount, static_cast<size_t>(blocks * groups) * sizeof(int), op));
  }
  launch_early(im, op, kernel, dim3(static_cast<unsigned>(blocks), static_cast<unsigned>(kb)), dim3(kThreads), 0, x,
               xs, w, bias, y, N, in, out, ks, act, f, gpart, gcount);
}

// A pass of 9..32 rows: split once (split_kernel), then the product on the fragments.
template <int NT, int R, bool GLU>
void launch_mma_split(Impl& im, const float* x, int64_t N, const uint16_t* w, const float* bias, float* y, int64_t in,
                      int64_t out, Act act, const char* op) {
  const int64_t threads = in / 32 * NT * 32;
  uint4* xs = im.ensure_t<uint4>(kSplitX, threads * 2, op);
  launch_chain(im, op, split_kernel, dim3(static_cast<unsigned>((threads + 255) / 256)), dim3(256), 0, x, xs, N, in,
               NT);
  launch_mma<NT, R, GLU, false, false, true>(im, x, xs, N, w, bias, y, in, out, act, ProductFusion{}, op);
}

}  // namespace

bool mma_gemm_fits(const float* x, int64_t N, const Tensor& w) {
  const int64_t in = w.dim(1);
  return w.dtype() == DType::BF16 && N >= 2 && in % 32 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(w.data()) % 16 == 0;
}

// Two weight tiles per warp (R = 2) from 5 rows on for the large products: the activations a
// lane loads (and at up to 8 rows splits) serve twice the weights. Measured at batch 32 (H100,
// step ms, 1 / 2 / 4 tiles for every product): temporal 8.79 / 8.25 / 14.8, depformer 2.92 /
// 3.94 / 7.88 -- the depformer's 2-12 MB products have too few tiles to fill the GPU with 2 a warp.
template <int R, bool GLU, bool RMS, bool ADD>
static void mma_gemm_pass(Impl& im, const float* xs, int64_t n, const uint16_t* wp, const float* bias, float* ys,
                          int64_t in, int64_t out, Act act, const ProductFusion& f, const char* op) {
  if (!RMS && im.wgmma && wgmma_fits(n, in, GLU ? 2 * out : out, GLU))
    return wgmma_gemm(im, xs, n, wp, bias, ys, in, out, GLU, act, ADD, f.scale, op);
  if (n <= 8)
    launch_mma<1, R, GLU, RMS, ADD>(im, xs, nullptr, n, wp, bias, ys, in, out, act, f, op);
  else if (RMS || ADD)  // (not used from 9 rows on by the models: the norm runs before the product)
    n <= 16 ? launch_mma<2, 1, GLU, RMS, ADD>(im, xs, nullptr, n, wp, bias, ys, in, out, act, f, op)
            : launch_mma<4, 1, GLU, RMS, ADD>(im, xs, nullptr, n, wp, bias, ys, in, out, act, f, op);
  else
    n <= 16 ? launch_mma_split<2, R, GLU>(im, xs, n, wp, bias, ys, in, out, act, op)
            : launch_mma_split<4, R, GLU>(im, xs, n, wp, bias, ys, in, out, act, op);
}

template <bool GLU, bool RMS = false, bool ADD = false>
static void mma_gemm_passes(Impl& im, const float* x, int64_t N, const Tensor& w, const float* bias, float* y,
                            Act act, const ProductFusion& f, const char* op) {
  const int64_t in = w.dim(1), out = GLU ? w.dim(0) / 2 : w.dim(0);
  const bool wide = w.dim(0) * in * 2 >= (int64_t{16} << 20);
  for (int64_t n0 = 0; n0 < N; n0 += 32) {
    const int64_t n = std::min<int64_t>(32, N - n0);
    const float* xs = x + n0 * in;
    float* ys = y + n0 * out;
    const uint16_t* wp = w.ptr<uint16_t>();
    if (wide && n > 4)
      mma_gemm_pass<2, GLU, RMS, ADD>(im, xs, n, wp, bias, ys, in, out, act, f, op);
    else
      mma_gemm_pass<1, GLU, RMS, ADD>(im, xs, n, wp, bias, ys, in, out, act, f, op);
  }
}

void mma_gemm(Impl& im, const float* x, int64_t N, const Tensor& w, const float* bias, float* y, const char* op) {
  mma_gemm_passes<false>(im, x, N, w, bias, y, Act::Identity, ProductFusion{}, op);
}

void mma_gemm_fused(Impl& im, const float* x, int64_t N, const Tensor& w, const float* bias, float* y, bool glu,
                    Act act, const ProductFusion& f, const char* op) {
  MOSHI_CHECK(!(f.nw && f.add) && !(glu && f.add), "cuda ", op, ": no such fused tensor-core product");
  if (glu && f.nw)
    mma_gemm_passes<true, true>(im, x, N, w, bias, y, act, f, op);
  else if (f.nw)
    mma_gemm_passes<false, true>(im, x, N, w, bias, y, act, f, op);
  else
    mma_gemm_passes<false, false, true>(im, x, N, w, bias, y, act, f, op);
}

void mma_gemm_glu(Impl& im, const float* x, int64_t N, const Tensor& w, const float* bias, float* y, Act act,
                  const char* op) {
  mma_gemm_passes<true>(im, x, N, w, bias, y, act, ProductFusion{}, op);
}

}  // namespace cuda
}  // namespace moshi
