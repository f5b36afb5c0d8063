// The 2..32-row products of large bf16 matrices on Hopper's warpgroup MMA (wgmma.mma_async,
// sm_90a), with the weights brought in by the tensor memory accelerator (TMA). mma_gemm sends its
// passes here where wgmma_fits and the backend has the path (Impl::wgmma: built for sm_90a, a
// compute capability 9.0 device, MOSHI_WGMMA not 0); those with the RMSNorm folded in stay on
// mma.sync. Measured against mma.sync in docs/performance.md.
//
// Shape of the work. A block is one consumer warpgroup (128 threads) plus one producer warp, and
// owns MT tiles of 64 weight rows (GLU: each tile 32 gate rows and their 32 up rows, in
// alternating groups of 8) over a range of `in`; blocks split `in` (KS of them per row block) so
// that the grid fills the SMs, and the last block of a row block to finish adds the KS partial
// sums in order (deterministic). The block walks its range in stages of KW·64 k values, S stages
// in flight. A stage is:
// - the weights: KW TMA boxes of MT·64 rows x 64 k (128 bytes a row) with the 128-byte swizzle,
//   evict-first in L2 (GLU: a 4D box whose groups alternate 8 gate rows and their 8 up rows);
//   rows past the end of the matrix read as zeros;
// - the activations (B): the NP rows' bf16 hi halves, then their lo halves, as written by
//   wgmma_split_kernel in the canonical K-major layout without swizzle, one bulk copy.
// A full barrier per stage counts the bytes in; an empty barrier (one arrival per consumer warp)
// hands the slot back to the producer. Per k16 step and tile, two wgmma m64nNPk16: A x hi and
// A x lo into the same accumulators (the split adds back up on the way).
#include <cuda.h>  // CUtensorMap (internal: the public headers stay free of CUDA)
#include <cudaTypedefs.h>
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdlib>

#include "runtime/cuda/common.cuh"

// The device code of the kernel exists only where wgmma does (sm_90a); other architectures of a
// build get a kernel that traps, never launched (Impl::wgmma is off there).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ == 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define MOSHI_WGMMA_ARCH 1
#endif

namespace moshi {
namespace cuda {
namespace {

constexpr int kWgConsumers = 128;              // one warpgroup
constexpr int kWgThreads = kWgConsumers + 32;  // and the producer warp
constexpr int kWgTileBytes = 64 * 128;         // one tile's stage: 64 rows x 64 k, bf16
constexpr int kWgMaxSplit = 16;
constexpr int kWgMaxStages = 8;

template <int NP>
__host__ __device__ constexpr int b_stage_bytes() {
  return 4 * 64 * NP;  // 4 k16 steps x (hi + lo) x NP rows x 16 k x 2 bytes
}
template <int NP, int MT, int KW>
__host__ __device__ constexpr int stage_bytes() {
  return KW * (MT * kWgTileBytes + b_stage_bytes<NP>());
}

// x [N, in] (N <= np) as B, per k16 step q (4·np uint4): the hi block (np/8 groups of 8 rows x
// 2 k halves x 16 bytes), then the lo block. Thread (q, group, kc, r) splits row group·8 + r's
// k values q·16 + kc·8 .. +7 (zero past N) and writes 16 bytes to each block.
__global__ void wgmma_split_kernel(const float* __restrict__ x, uint4* __restrict__ xs, int64_t N, int64_t in,
                                   int np) {
  pdl_trigger();
  pdl_wait();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int groups = np / 8;
  if (i >= in / 16 * groups * 16) return;
  const int r = static_cast<int>(i & 7), kc = static_cast<int>((i >> 3) & 1);
  const int64_t rest = i >> 4;
  const int grp = static_cast<int>(rest % groups);
  const int64_t q = rest / groups;
  const int64_t n = grp * 8 + r;
  float4 p = make_float4(0.f, 0.f, 0.f, 0.f), s = p;
  if (n < N) {
    const float* xr = x + n * in + q * 16 + kc * 8;
    p = *reinterpret_cast<const float4*>(xr);
    s = *reinterpret_cast<const float4*>(xr + 4);
  }
  uint4 h, l;
  split2(p.x, p.y, h.x, l.x);
  split2(p.z, p.w, h.y, l.y);
  split2(s.x, s.y, h.z, l.z);
  split2(s.z, s.w, h.w, l.w);
  uint4* step = xs + q * 4 * np;
  const int at = grp * 16 + kc * 8 + r;
  step[at] = h;
  step[2 * np + at] = l;
}

#if defined(MOSHI_WGMMA_ARCH) || !defined(__CUDA_ARCH__)
__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Canonical K-major, no swizzle: core matrices of 8 rows x 16 bytes; the two k halves of a k16
// step 128 bytes apart (leading byte offset), 8-row groups 256 bytes apart (stride byte offset).
__device__ __forceinline__ uint64_t desc_plain(uint32_t a) {
  return ((a >> 4) & 0x3fffull) | (uint64_t{128 >> 4} << 16) | (uint64_t{256 >> 4} << 32);
}
// K-major with the 128-byte swizzle (as TMA writes it): rows of 128 bytes (64 k), 8-row atoms
// 1024 bytes apart (stride byte offset; the leading offset is unused), layout type 1 in bits
// 62-63. A k16 step inside the atom starts 32 bytes further (the swizzle applies to the
// address, so the atoms must be 1024-byte aligned).
__device__ __forceinline__ uint64_t desc_sw128(uint32_t a) {
  return ((a >> 4) & 0x3fffull) | (uint64_t{1024 >> 4} << 32) | (uint64_t{1} << 62);
}

__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int K>
__device__ __forceinline__ void wg_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(K) : "memory");
}

// d += A (descriptor) · B (descriptor), m64 x N x k16, f32 accumulate.
template <int N>
struct Wgmma;

template <>
struct Wgmma<8> {
  static __device__ __forceinline__ void run(float (&d)[4], uint64_t da, uint64_t db) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %6, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n8k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3}, %4, %5, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "l"(da), "l"(db), "r"(1));
  }
};

template <>
struct Wgmma<16> {
  static __device__ __forceinline__ void run(float (&d)[8], uint64_t da, uint64_t db) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %10, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7}, %8, %9, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])
        : "l"(da), "l"(db), "r"(1));
  }
};

template <>
struct Wgmma<32> {
  static __device__ __forceinline__ void run(float (&d)[16], uint64_t da, uint64_t db) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, %16, %17, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
        : "l"(da), "l"(db), "r"(1));
  }
};

// ---- barriers and bulk copies (shared::cta addresses) ----
__device__ __forceinline__ void bar_init(uint32_t bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void bar_expect(uint32_t bar, int bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void bar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(bar) : "memory");
}
// Returns once the phase of parity `parity` has completed.
__device__ __forceinline__ void bar_wait(uint32_t bar, uint32_t parity) {
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (!done);
}
// The block's box of the weights' tensor map for one stage (all its tiles) into shared memory,
// counted on `bar`: 2D at (k, row) for a plain product, 4D at (k, 0, 0, group) for a GLU one.
__device__ __forceinline__ void tma_box2(uint32_t dst, const CUtensorMap* map, int k, int row, uint32_t bar,
                                        uint64_t pol) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.L2::cache_hint"
      " [%0], [%1, {%2, %3}], [%4], %5;" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(k), "r"(row), "r"(bar), "l"(pol)
      : "memory");
}
__device__ __forceinline__ void tma_box4(uint32_t dst, const CUtensorMap* map, int k, int group, uint32_t bar,
                                        uint64_t pol) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.L2::cache_hint"
      " [%0], [%1, {%2, %3, %4, %5}], [%6], %7;" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(k), "r"(0), "r"(0), "r"(group), "r"(bar), "l"(pol)
      : "memory");
}
// `bytes` contiguous bytes into shared memory, counted on `bar`.
__device__ __forceinline__ void bulk_copy(uint32_t dst, const void* src, int bytes, uint32_t bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(dst),
               "l"(src), "r"(bytes), "r"(bar)
               : "memory");
}
// The 128 consumer threads only (the producer warp may have finished).
__device__ __forceinline__ void consumers_sync() { asm volatile("bar.sync 1, 128;" ::: "memory"); }
#endif

// NP activation rows (B: NP columns, hi and lo), GLU as in mma_gemm, MT tiles of 64 rows a
// block, S stages in flight. Grid: (row blocks, KS). Dynamic shared memory: S stages + 1 KB
// (the stages start at a 1024-byte boundary).
template <int NP, bool GLU, int MT, int S, int KW>
__global__ void __launch_bounds__(kWgThreads, 1)
    wgmma_tma_kernel(const __grid_constant__ CUtensorMap wmap, const uint4* __restrict__ xs,
                     const float* __restrict__ bias, float* __restrict__ y, int64_t N, int64_t in, int64_t out,
                     Act act, int add, const float* __restrict__ scale, float* part, int* __restrict__ count) {
#if defined(__CUDA_ARCH__) && !defined(MOSHI_WGMMA_ARCH)
  __trap();  // (never launched: Impl::wgmma is off unless the build has sm_90a)
#else
  constexpr int ND = NP / 2;  // accumulators a thread holds per tile (64 x NP / 128)
  constexpr int AST1 = MT * kWgTileBytes, BST1 = b_stage_bytes<NP>();  // one box's worth
  constexpr int AST = KW * AST1, BST = KW * BST1, STAGE = stage_bytes<NP, MT, KW>();
  constexpr int RPB = MT * 64;  // weight rows a block (GLU: MT·32 outputs)
  extern __shared__ unsigned char sm_raw[];
  __shared__ __align__(8) uint64_t full[S], empty[S];
  __shared__ int last;
  const uint32_t raw = smem_u32(sm_raw), base = (raw + 1023u) & ~1023u;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int64_t rb = blockIdx.x, kb = blockIdx.y, KS = gridDim.y;
  const int64_t nst_all = in / (64 * KW), s0 = kb * nst_all / KS, s1 = (kb + 1) * nst_all / KS;
  const int nst = static_cast<int>(s1 - s0);

  if (tid == 0) {
    for (int s = 0; s < S; ++s) {
      bar_init(smem_u32(&full[s]), 1);
      bar_init(smem_u32(&empty[s]), kWgConsumers / 32);
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  pdl_trigger();

  if (warp == kWgConsumers / 32) {  // the producer
    if (lane == 0) {
      asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<uint64_t>(&wmap)) : "memory");
      const uint64_t pol = evict_first_policy();
      auto load_a = [&](int i, int slot) {
#pragma unroll
        for (int j = 0; j < KW; ++j) {
          const int k = static_cast<int>((s0 + i) * 64 * KW + 64 * j);
          if (GLU)  // MT·4 groups of 8 gate rows and their 8 up rows
            tma_box4(base + slot * STAGE + j * AST1, &wmap, k, static_cast<int>(rb * MT * 4), smem_u32(&full[slot]),
                     pol);
          else
            tma_box2(base + slot * STAGE + j * AST1, &wmap, k, static_cast<int>(rb * RPB), smem_u32(&full[slot]), pol);
        }
      };
      auto load_b = [&](int i, int slot) {
        bulk_copy(base + slot * STAGE + AST, xs + (s0 + i) * (BST / 16), BST, smem_u32(&full[slot]));
      };
      // The first stages' weights before waiting for the previous kernel (it never writes them).
      const int pre = nst < S ? nst : S;
      for (int i = 0; i < pre; ++i) {
        bar_expect(smem_u32(&full[i]), STAGE);
        load_a(i, i);
      }
      pdl_wait();
      for (int i = 0; i < pre; ++i) load_b(i, i);
      for (int i = S; i < nst; ++i) {
        const int slot = i % S;
        bar_wait(smem_u32(&empty[slot]), static_cast<uint32_t>((i / S - 1) & 1));
        bar_expect(smem_u32(&full[slot]), STAGE);
        load_a(i, slot);
        load_b(i, slot);
      }
    }
    return;
  }

  pdl_wait();  // (before any write: y may still be read by the kernel before)
  float d[MT][ND];
#pragma unroll
  for (int m = 0; m < MT; ++m)
#pragma unroll
    for (int i = 0; i < ND; ++i) d[m][i] = 0.f;

  for (int it = 0; it < nst; ++it) {
    const int slot = it % S;
    bar_wait(smem_u32(&full[slot]), static_cast<uint32_t>((it / S) & 1));
    wg_fence();
#pragma unroll
    for (int j = 0; j < KW; ++j) {
      const uint32_t a = base + slot * STAGE + j * AST1, b = base + slot * STAGE + AST + j * BST1;
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const uint64_t bh = desc_plain(b + q * 64 * NP), bl = desc_plain(b + q * 64 * NP + 32 * NP);
#pragma unroll
        for (int m = 0; m < MT; ++m) Wgmma<NP>::run(d[m], desc_sw128(a + m * kWgTileBytes + q * 32), bh);
#pragma unroll
        for (int m = 0; m < MT; ++m) Wgmma<NP>::run(d[m], desc_sw128(a + m * kWgTileBytes + q * 32), bl);
      }
    }
    wg_commit();
    wg_wait<1>();  // the previous stage's products are done: its slot goes back to the producer
    if (it > 0 && lane == 0) bar_arrive(smem_u32(&empty[(it - 1) % S]));
  }
  wg_wait<0>();

  if (KS > 1) {  // partials of every block; the last one to finish adds them in order
    constexpr int NV = MT * ND;
    const int64_t RB = gridDim.x;
    float* mine = part + (kb * RB + rb) * NV * kWgConsumers + tid;
#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
      for (int i = 0; i < ND; ++i) mine[(m * ND + i) * kWgConsumers] = d[m][i];
    __threadfence();
    consumers_sync();
    if (tid == 0) {
      const int done = atomicAdd(&count[rb], 1) + 1;
      last = done == KS;
      if (last) count[rb] = 0;
    }
    consumers_sync();
    if (!last) return;
    __threadfence();
#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
      for (int i = 0; i < ND; ++i) d[m][i] = 0.f;
    for (int64_t k = 0; k < KS; ++k) {
      const float* pk = part + (k * RB + rb) * NV * kWgConsumers + tid;
#pragma unroll
      for (int m = 0; m < MT; ++m)
#pragma unroll
        for (int i = 0; i < ND; ++i) d[m][i] += __ldcg(pk + (m * ND + i) * kWgConsumers);
    }
  }
  // d[m][j·4 + e]: tile row 16·warp + g (e < 2) or + 8, column (activation row) 8j + 2t + (e & 1).
  // GLU tiles alternate 8 gate rows and their 8 up rows, so a lane holds both of output
  // rb·RPB/2 + m·32 + 8·warp + g.
#pragma unroll
  for (int m = 0; m < MT; ++m)
#pragma unroll
    for (int j = 0; j < NP / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t n = j * 8 + 2 * t + (e & 1);
        if (n >= N) continue;
        if (GLU) {
          if (e >= 2) continue;
          const int64_t i = rb * (RPB / 2) + m * 32 + warp * 8 + g;
          if (i < out) {
            const float gate = d[m][j * 4 + e] + (bias ? bias[i] : 0.f),
                        up = d[m][j * 4 + e + 2] + (bias ? bias[out + i] : 0.f);
            y[n * out + i] = apply_act(gate, act) * up;
          }
        } else {
          const int64_t row = rb * RPB + m * 64 + warp * 16 + g + (e >= 2 ? 8 : 0);
          if (row < out) {
            const float v = d[m][j * 4 + e] + (bias ? bias[row] : 0.f);
            float* o = y + n * out + row;
            *o = add ? *o + (scale ? scale[row] * v : v) : v;
          }
        }
      }
#endif
}

// Splits of `in` (1..kWgMaxSplit, at least a stage each): the fewest waves of blocks times the
// 64-wide steps of `in` each block walks plus a block's start and end, counted as 2 such steps
// with stages of one box and 4 with stages of 4 boxes. Fewer, longer blocks win ties. Measured on
// an H100 (docs/performance.md): those costs beat the fullest waves and the costs 0, 4 and 8 (one
// box), 0, 2 and 8 (4 boxes).
int wgmma_split_count(const Impl& im, int64_t row_blocks, int64_t stages, int resident, int kw) {
  const int64_t cap = static_cast<int64_t>(im.sms) * resident, block_cost = kw == 1 ? 2 : 4;
  int best = 1;
  int64_t best_cost = INT64_MAX;
  for (int ks = 1; ks <= kWgMaxSplit && stages / ks >= 1; ++ks) {
    const int64_t waves = (row_blocks * ks + cap - 1) / cap, cost = waves * (block_cost + kw * ((stages + ks - 1) / ks));
    if (cost < best_cost) {
      best_cost = cost;
      best = ks;
    }
  }
  return best;
}

// The driver's tensor-map encoder, through the runtime (no link against libcuda).
PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder(const char* op) {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess)
      p = nullptr;
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
  }();
  MOSHI_CHECK(fn, "cuda ", op, ": the driver has no cuTensorMapEncodeTiled");
  return fn;
}

// The weights in boxes (a stage takes KW of them along k): w [rows, in] bf16 in boxes of MT·64
// rows x 64 k, or for a GLU weight [2·out, in] the 4D view (k, row in group of 8, gate/up, group)
// in boxes of 64 x 8 x 2 x MT·4, so that the tile alternates 8 gate rows and their 8 up rows. The 128-byte
// swizzle either way; rows (groups) past the end read as zeros.
CUtensorMap weight_map(const uint16_t* w, int64_t out, int64_t in, bool glu, int mt, const char* op) {
  CUtensorMap map;
  const cuuint64_t row = static_cast<cuuint64_t>(in) * 2;
  const cuuint64_t dims2[2] = {static_cast<cuuint64_t>(in), static_cast<cuuint64_t>(out)};
  const cuuint64_t strides2[1] = {row};
  const cuuint32_t box2[2] = {64, static_cast<cuuint32_t>(64 * mt)};
  const cuuint64_t dims4[4] = {static_cast<cuuint64_t>(in), 8, 2, static_cast<cuuint64_t>(out / 8)};
  const cuuint64_t strides4[3] = {row, row * static_cast<cuuint64_t>(out), row * 8};
  const cuuint32_t box4[4] = {64, 8, 2, static_cast<cuuint32_t>(4 * mt)};
  const cuuint32_t elem[4] = {1, 1, 1, 1};
  const CUresult r = tensor_map_encoder(op)(
      &map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, glu ? 4 : 2, const_cast<uint16_t*>(w), glu ? dims4 : dims2,
      glu ? strides4 : strides2, glu ? box4 : box2, elem, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
      CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  MOSHI_CHECK(r == CUDA_SUCCESS, "cuda ", op, ": cuTensorMapEncodeTiled failed (", static_cast<int>(r), ") for ",
              glu ? 2 * out : out, " x ", in);
  return map;
}

template <int NP, bool GLU, int MT, int S, int KW>
void launch_wgmma_cfg(Impl& im, const float* x, int64_t N, const uint16_t* w, const float* bias, float* y, int64_t in,
                      int64_t out, Act act, bool add, const float* scale, const char* op) {
  static_assert(S <= kWgMaxStages, "stages");
  const int64_t split_threads = in / 16 * (NP / 8) * 16;
  uint4* xs = im.ensure_t<uint4>(kSplitX, in / 16 * 4 * NP, op);
  launch_chain(im, op, wgmma_split_kernel, dim3(static_cast<unsigned>((split_threads + 255) / 256)), dim3(256), 0, x,
               xs, N, in, NP);
  constexpr int RPB = MT * 64;
  const int64_t row_blocks = GLU ? (out + RPB / 2 - 1) / (RPB / 2) : (out + RPB - 1) / RPB, stages = in / (64 * KW);
  const size_t smem = static_cast<size_t>(S) * stage_bytes<NP, MT, KW>() + 1024;
  auto kernel = wgmma_tma_kernel<NP, GLU, MT, S, KW>;
  // A replayed stage launches nothing, so it makes no runtime or driver call here: these two ran
  // ~100 times a step on the host before each graph launch (batch 8 and 32: 0.1-0.2 ms a step).
  if (im.live())
    MOSHI_CUDA_CHECK(op,
                     cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  const int KS = wgmma_split_count(im, row_blocks, stages, blocks_per_sm(im, kernel, kWgThreads, smem, op), KW);
  float* part = nullptr;
  int* count = nullptr;
  if (KS > 1) {
    part = im.ensure_t<float>(kWgPart, KS * row_blocks * kWgConsumers * MT * (NP / 2), op);
    count = static_cast<int*>(im.ensure_zeroed(kWgCount, static_cast<size_t>(row_blocks) * sizeof(int), op));
  }
  const CUtensorMap map = im.live() ? weight_map(w, out, in, GLU, MT, op) : CUtensorMap{};
  launch_early(im, op, kernel, dim3(static_cast<unsigned>(row_blocks), static_cast<unsigned>(KS)), dim3(kWgThreads),
               smem, map, xs, bias, y, N, in, out, act, add ? 1 : 0, scale, part, count);
}

// One tile of 64 weight rows a block. Up to 8 activation rows: stages of one box (64 of `in`), 6
// in flight (3 blocks an SM); 9 to 32 rows: stages of 4 boxes along `in` (256), 3 in flight,
// where `in` allows. Measured on an H100 (docs/performance.md).
template <int NP, bool GLU>
void launch_wgmma(Impl& im, const float* x, int64_t N, const uint16_t* w, const float* bias, float* y, int64_t in,
                  int64_t out, Act act, bool add, const float* scale, const char* op) {
  if (NP > 8 && in % 256 == 0)
    launch_wgmma_cfg<NP, GLU, 1, 3, 4>(im, x, N, w, bias, y, in, out, act, add, scale, op);
  else
    launch_wgmma_cfg<NP, GLU, 1, 6, 1>(im, x, N, w, bias, y, in, out, act, add, scale, op);
}

}  // namespace

// Products of at least 16 MB: the smaller ones (the depformer's 2-12 MB) were slower here than
// on mma.sync, whose blocks fill the SMs sooner (docs/performance.md).
bool wgmma_fits(int64_t N, int64_t in, int64_t rows, bool glu) {
  return N >= 2 && N <= 32 && in % 64 == 0 && in >= 128 && in <= INT32_MAX && rows <= INT32_MAX &&
         (!glu || rows % 16 == 0) && rows * in * 2 >= (int64_t{16} << 20);
}

// y [N, out] = x [N, in] · wᵀ (+ bias), 2 <= N <= 32 (GLU: act(gate) ⊙ up of w [2·out, in]);
// add: y += scale ⊙ that (not with GLU).
void wgmma_gemm(Impl& im, const float* x, int64_t N, const uint16_t* w, const float* bias, float* y, int64_t in,
                int64_t out, bool glu, Act act, bool add, const float* scale, const char* op) {
  MOSHI_CHECK(im.wgmma && wgmma_fits(N, in, glu ? 2 * out : out, glu) && !(glu && add), "cuda ", op,
              ": no wgmma product for ", N, " rows of ", in);
  if (N <= 8)
    glu ? launch_wgmma<8, true>(im, x, N, w, bias, y, in, out, act, false, nullptr, op)
        : launch_wgmma<8, false>(im, x, N, w, bias, y, in, out, act, add, scale, op);
  else if (N <= 16)
    glu ? launch_wgmma<16, true>(im, x, N, w, bias, y, in, out, act, false, nullptr, op)
        : launch_wgmma<16, false>(im, x, N, w, bias, y, in, out, act, add, scale, op);
  else
    glu ? launch_wgmma<32, true>(im, x, N, w, bias, y, in, out, act, false, nullptr, op)
        : launch_wgmma<32, false>(im, x, N, w, bias, y, in, out, act, add, scale, op);
}

}  // namespace cuda
}  // namespace moshi
