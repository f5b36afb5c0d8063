// Shared by the CUDA backend's .cu files: error checking, kernel launches, the backend's state
// (stream, cuBLAS handle, grow-only scratch) and small device helpers.
//
// Errors: every CUDA runtime and cuBLAS call goes through MOSHI_CUDA_CHECK and every kernel
// through launch(), which checks the launch. Both throw moshi::Error naming the op and the CUDA
// error string. Kernels run asynchronously, so a fault inside one (e.g. an illegal address)
// surfaces at a later checked call; MOSHI_CUDA_SYNC=1 in the environment synchronises after
// every launch so that the failing op is the one named.
#pragma once
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"
#include "runtime/cuda/cuda_backend.h"

namespace moshi {
namespace cuda {

[[noreturn]] inline void fail_status(const char* op, const char* lib, const char* what, const char* expr) {
  fail(lib, " error in ", op, ": ", what, " (", expr, ")");
}
inline void check(cudaError_t e, const char* op, const char* expr) {
  if (e == cudaSuccess) return;
  // Faults inside kernels are reported by whichever call comes next.
  const bool async = e == cudaErrorIllegalAddress || e == cudaErrorLaunchFailure || e == cudaErrorMisalignedAddress ||
                     e == cudaErrorIllegalInstruction || e == cudaErrorInvalidPc || e == cudaErrorAssert ||
                     e == cudaErrorHardwareStackError || e == cudaErrorLaunchTimeout;
  if (async)
    fail("CUDA error in ", op, ": ", cudaGetErrorString(e), " (", expr,
         "; may come from an earlier kernel: MOSHI_CUDA_SYNC=1 names the op that raised it)");
  fail_status(op, "CUDA", cudaGetErrorString(e), expr);
}
inline void check(cublasStatus_t s, const char* op, const char* expr) {
  if (s != CUBLAS_STATUS_SUCCESS) fail_status(op, "cuBLAS", cublasGetStatusString(s), expr);
}

}  // namespace cuda
}  // namespace moshi

// The one check: `expr` is a CUDA runtime or cuBLAS call; `op` names the backend op for the message.
#define MOSHI_CUDA_CHECK(op, expr) ::moshi::cuda::check((expr), (op), #expr)

namespace moshi {
namespace cuda {

// Scratch slots, one per use, so that an op never hands the same buffer to two of its steps.
enum Slot : int {
  kHostArgs,   // host vectors (positions, ids, masks) copied up for one op
  kCol,        // conv1d im2col
  kZ,          // conv_transpose1d products
  kTmp,        // new history / partial state before it replaces the old
  kAttnPart,   // attention split-K partial results
  kDots,       // vq distances
  kWideW,      // bf16 weights widened to f32 for cuBLAS
  kSplitX,     // activations split into bf16 hi + lo fragments for the tensor cores
  kWgPart,     // wgmma products: partial sums of the blocks that split `in`
  kWgCount,    // wgmma products: blocks done per row block, back to 0 after each launch
  kMmaPart,    // mma.sync products: partial sums of the blocks that split `in`
  kMmaCount,   // mma.sync products: blocks done per warp group, back to 0 after each launch
  kSlots
};

struct Scratch {
  void* ptr = nullptr;
  size_t cap = 0;
};

// How ops run (see Backend::stage_begin; graph.cu):
//   Eager    launched as they come, host arrays copied up per op;
//   Warm     the first run of a stage: eager, while counting what a run stages and launches;
//   Capture  the second run: recorded into a CUDA graph, host arrays written to the stage's
//            page-locked arena (the graph's first node copies it up);
//   Replay   later runs: nothing is launched, host arrays are written to the arena, and
//            stage_end launches the graph.
enum class Mode { Eager, Warm, Capture, Replay };

struct Stage {
  int runs = 0;
  bool eager_only = false;  // recording failed or is disabled: always run as Eager
  size_t arena_bytes = 0;   // host-array bytes of one run
  uint64_t signature = 0;   // launches and host-array sizes of one run
  char* arena_host = nullptr;
  char* arena_dev = nullptr;
  cudaGraphExec_t exec = nullptr;
  cudaEvent_t done = nullptr;  // after the latest launch (its arena may be rewritten then)
};

struct Impl {
  int dev = 0;
  int sms = 1;
  bool sync_each = false;  // MOSHI_CUDA_SYNC=1
  std::string device_name;
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  Scratch scratch[kSlots];
  std::vector<int64_t> host_args;       // staging for host vectors
  std::map<std::string, Tensor> tables;  // small constant tables (rope frequencies, ...) by key
  std::map<const void*, int> resident;   // blocks of a kernel one SM holds at once, by kernel
  void* blas_workspace = nullptr;        // given to cuBLAS so that it never allocates in a graph

  // MOSHI_PROFILE_OPS=1: every launch is timed alone between two events and waited for (slow,
  // no graphs); the times include the gap while the launch reaches the GPU.
  bool profile = false;
  cudaEvent_t prof_a = nullptr, prof_b = nullptr;
  cudaEvent_t marks[4] = {nullptr, nullptr, nullptr, nullptr};  // Backend::mark
  void profile_launch_begin(const char* op);
  void profile_launch_end(const char* op);
  // Programmatic dependent launch for launch_early() (compute capability 9.0+, not profiling or
  // syncing each op; MOSHI_CUDA_PDL=0 turns it off).
  bool pdl = false;
  // The warpgroup-MMA products (wgmma_gemm.cu): built for sm_90a, a compute capability 9.0
  // device, and MOSHI_WGMMA not 0 (which keeps every product on mma.sync, for comparison).
  bool wgmma = false;
  bool graphs = true;  // MOSHI_CUDA_GRAPHS=0 (or MOSHI_CUDA_SYNC=1) runs every stage eagerly
  std::map<int, Stage> stages;
  int next_stage = 1;
  Mode mode = Mode::Eager;
  Stage* active = nullptr;  // the stage being run, outside Eager
  size_t cursor = 0;        // host-array bytes staged so far in this run
  uint64_t signature = 0;   // of this run so far

  // False while replaying, when ops only stage their host arrays: every enqueue (launch, copy,
  // memset, cuBLAS call) is skipped unless live().
  bool live() const { return mode != Mode::Replay; }
  // Folds one enqueued item into the run's signature (Warm, Capture and Replay).
  void note(uint64_t v) {
    if (mode != Mode::Eager) signature = (signature ^ v) * 0x100000001b3ull;
  }
  // Fails when `what` happens inside a stage: host round trips anywhere in one
  // (`recording_only` false), allocations while it is recorded or replayed (true).
  void forbid_in_stage(const char* what, bool recording_only = false) const;
  void release_stage(Stage& st);

  ~Impl();
  // Makes this backend's device current for the calling thread (ops may come from any thread).
  // Called first by every op, so an error left by an earlier kernel is reported here, under `op`.
  void enter(const char* op) const { MOSHI_CUDA_CHECK(op, cudaSetDevice(dev)); }
  // Scratch of at least `bytes`, grown (never shrunk) on demand. Growing waits for queued work
  // that may still read the old buffer.
  void* ensure(Slot s, size_t bytes, const char* op);
  // As ensure, zero-filled whenever it is (re)allocated (the ops that use it leave it zero).
  void* ensure_zeroed(Slot s, size_t bytes, const char* op);
  template <typename T>
  T* ensure_t(Slot s, int64_t count, const char* op) {
    return static_cast<T*>(ensure(s, static_cast<size_t>(count > 0 ? count : 1) * sizeof(T), op));
  }
  // Copies the concatenation of host vectors to kHostArgs; returns its device address. The copy
  // is stream-ordered (pageable memory is staged before cudaMemcpyAsync returns).
  const int64_t* put_args(std::initializer_list<const std::vector<int64_t>*> parts, const char* op);
  // A device f32 table built once per key by `make` on the host.
  template <typename F>
  const float* table(const std::string& key, F make, const char* op);
  // Device memory owning a fresh zero-filled allocation of `bytes` (at least 256, so that
  // empty tensors still have storage).
  std::shared_ptr<void> alloc(size_t bytes, const char* op);
  void after_launch(const char* op) {
    MOSHI_CUDA_CHECK(op, cudaGetLastError());
    if (sync_each) MOSHI_CUDA_CHECK(op, cudaStreamSynchronize(stream));
  }
};

template <typename F>
const float* Impl::table(const std::string& key, F make, const char* op) {
  auto it = tables.find(key);
  if (it == tables.end()) {
    const std::vector<float> host = make();
    const size_t bytes = host.size() * sizeof(float);
    std::shared_ptr<void> mem = alloc(bytes, op);
    Tensor t(mem, mem.get(), DType::F32, {static_cast<int64_t>(host.size())}, Device::CUDA);
    if (bytes) MOSHI_CUDA_CHECK(op, cudaMemcpyAsync(t.data(), host.data(), bytes, cudaMemcpyHostToDevice, stream));
    it = tables.emplace(key, t).first;
  }
  return it->second.f32();
}

// Launches `kernel` on the backend's stream and checks the launch. Empty grids do nothing.
template <typename... KArgs, typename... Args>
void launch(Impl& im, const char* op, void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem,
            Args... args) {
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
  im.note(reinterpret_cast<uintptr_t>(kernel) ^ (static_cast<uint64_t>(grid.x) << 20) ^
          (static_cast<uint64_t>(grid.y) << 40) ^ (static_cast<uint64_t>(grid.z) << 50) ^ block.x ^ smem);
  if (!im.live()) return;
  if (im.profile) im.profile_launch_begin(op);
  kernel<<<grid, block, smem, im.stream>>>(static_cast<KArgs>(args)...);
  im.after_launch(op);
  if (im.profile) im.profile_launch_end(op);
}

// As launch(), for kernels that call pdl_wait() before touching anything an earlier op wrote:
// they may start (and fetch their weights) while the previous kernel finishes. Plain launch()
// where the GPU or the configuration (MOSHI_CUDA_PDL=0) has no programmatic dependent launch.
template <typename... KArgs, typename... Args>
void launch_early(Impl& im, const char* op, void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem,
                  Args... args) {
  if (!im.pdl) return launch(im, op, kernel, grid, block, smem, args...);
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
  im.note(reinterpret_cast<uintptr_t>(kernel) ^ (static_cast<uint64_t>(grid.x) << 20) ^
          (static_cast<uint64_t>(grid.y) << 40) ^ (static_cast<uint64_t>(grid.z) << 50) ^ block.x ^ smem ^ 0x9d1u);
  if (!im.live()) return;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = im.stream;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  MOSHI_CUDA_CHECK(op, cudaLaunchKernelEx(&cfg, kernel, static_cast<KArgs>(args)...));
  im.after_launch(op);
}

// A small kernel in a dependent chain (the depformer's attention, sampling, embedding, norms):
// started early where its grid has at most one block per SM, so that it is resident when the
// kernel before it ends; larger grids launch plainly (their early blocks would hold SM slots the
// kernel before still uses). The kernel calls pdl_wait() before reading anything an earlier op
// wrote. Not for a kernel that follows a many-block kernel and precedes a product: its trigger
// would start the product's blocks while the many-block kernel still needs the SMs.
template <typename... KArgs, typename... Args>
void launch_chain(Impl& im, const char* op, void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem,
                  Args... args) {
  if (static_cast<int64_t>(grid.x) * grid.y * grid.z <= im.sms)
    launch_early(im, op, kernel, grid, block, smem, args...);
  else
    launch(im, op, kernel, grid, block, smem, args...);
}

// Blocks of `kernel` (with `threads` threads and `smem` bytes of dynamic shared memory) that one
// SM holds at once (asked of the runtime once per kernel).
template <typename... KArgs>
int blocks_per_sm(Impl& im, void (*kernel)(KArgs...), int threads, size_t smem, const char* op) {
  const void* key = reinterpret_cast<const void*>(kernel);
  auto it = im.resident.find(key);
  if (it != im.resident.end()) return it->second;
  int n = 0;
  MOSHI_CUDA_CHECK(op, cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, threads, smem));
  return im.resident[key] = n > 0 ? n : 1;
}

// How many ways to split the reduction of a streaming product whose blocks each take 1/ks of
// the reduction (ks a power of 2 in [min_ks, max_ks]): the split that keeps the most SMs
// busy over the whole run, counting the idle tail of the last partial wave (resident = blocks
// one SM holds at ks = 1's launch shape: the block's shape does not depend on ks). Ties go to the
// smaller split, which sums fewer partial results.
inline int wave_split(const Impl& im, int64_t blocks_at_1, int resident, int min_ks, int max_ks) {
  const double capacity = static_cast<double>(im.sms) * resident;
  if (min_ks > max_ks) min_ks = max_ks;
  int best = min_ks;
  double best_score = -1.0;
  for (int ks = min_ks; ks <= max_ks; ks *= 2) {
    const double waves = static_cast<double>(blocks_at_1) * ks / capacity;
    const double busy = waves < 1.0 ? waves : waves / static_cast<double>(static_cast<int64_t>(waves + 0.999999));
    const double score = busy - 0.02 * __builtin_ctz(static_cast<unsigned>(ks));
    if (score > best_score + 1e-9) {
      best_score = score;
      best = ks;
    }
  }
  return best;
}

// Blocks for a grid-stride loop over n items (capped: each thread then takes several).
inline unsigned grid_for(const Impl& im, int64_t n, int threads = 256) {
  const int64_t want = (n + threads - 1) / threads, cap = static_cast<int64_t>(im.sms) * 32;
  return static_cast<unsigned>(want < cap ? want : cap);
}

// A grid-stride loop: int64_t i over [0, n) spread over the launched grid.
#define MOSHI_GRID_STRIDE(i, n)                                                        \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

// Tensor checks shared by the ops: device memory of the expected type.
inline void need_cuda(const Tensor& t, const char* op, const char* what) {
  MOSHI_CHECK(t.device() == Device::CUDA, "cuda ", op, ": ", what, " is not a CUDA tensor (made by another backend?)");
}
inline float* f32_of(const Tensor& t, const char* op, const char* what) {
  need_cuda(t, op, what);
  MOSHI_CHECK(t.dtype() == DType::F32, "cuda ", op, ": ", what, " must be f32, got ", dtype_name(t.dtype()));
  return t.f32();
}

// Rows of x that one GEMV pass takes: an f32 product of up to this many rows streams its weights
// once (matmul), more go to cuBLAS.
constexpr int64_t kGemvRows = 8;

// y[N, out] = x[N, in] · wᵀ (+ bias[out]) for a prepared linear weight w (device [out, in],
// f32 or bf16), f32 accumulation. gemv.cu.
void matmul(Impl& im, const float* x, int64_t N, const Tensor& w, const float* bias, float* y, const char* op);
// The same on the tensor cores for bf16 weights and 2 <= N rows (mma_gemm.cu), where
// mma_gemm_fits: `in` a multiple of 32 and 16-byte aligned rows.
bool mma_gemm_fits(const float* x, int64_t N, const Tensor& w);
// The large products on Hopper's warpgroup MMA (wgmma_gemm.cu), where Impl::wgmma and
// wgmma_fits (2..32 rows, `in` a multiple of 64, at least 16 MB of weights; rows = the weight's
// rows). add: y += scale ⊙ result (scale may be null; not with glu).
bool wgmma_fits(int64_t N, int64_t in, int64_t rows, bool glu);
void wgmma_gemm(Impl& im, const float* x, int64_t N, const uint16_t* w, const float* bias, float* y, int64_t in,
                int64_t out, bool glu, Act act, bool add, const float* scale, const char* op);
void mma_gemm(Impl& im, const float* x, int64_t N, const Tensor& w, const float* bias, float* y, const char* op);
// The same for a gated feed-forward's first product: w [2H, in] (gate rows, then up rows),
// y [N, H] = act(x · gateᵀ) ⊙ (x · upᵀ).
void mma_gemm_glu(Impl& im, const float* x, int64_t N, const Tensor& w, const float* bias, float* y, Act act,
                  const char* op);
// y [N, H] = act(x · gateᵀ) ⊙ (x · upᵀ) for w [2H, in] in one kernel where there is one for the
// shape (bf16 weights, aligned rows, up to 64 rows); false (nothing done) otherwise. gemv.cu.
bool matmul_glu(Impl& im, const float* x, int64_t N, const Tensor& w, float* y, Act act, const char* op);
// y = act(x · wᵀ + bias) in one kernel where there is one for the shape (a few rows, aligned);
// false (nothing done) otherwise. gemv.cu.
bool matmul_act(Impl& im, const float* x, int64_t N, const Tensor& w, const float* bias, float* y, Act act,
                const char* op);

// What a fused product does around its dot products. `nw` set: the input rows are RMS-normalized
// with alpha nw, as rms_norm computes it (no kernel folds a LayerNorm). `add`: y += scale ⊙
// result (scale may be null) instead of y = result.
struct ProductFusion {
  const float* nw = nullptr;
  float eps = 0.f;
  bool add = false;
  const float* scale = nullptr;
};
enum class ProductKind { Plain, Glu };
// y = x · wᵀ (+ bias) with `f` around it (Plain), or the gated activation of a [2H, in] weight
// (Glu, no bias), in one kernel where there is one for the shape (the RMSNorm: one row of
// bf16 weights, Plain or Glu; the add: Plain on any streaming or tensor-core product); false
// (nothing done) otherwise. gemv.cu.
bool matmul_fused(Impl& im, const float* x, int64_t N, const Tensor& w, const float* bias, float* y, ProductKind kind,
                  Act act, const ProductFusion& f, const char* op);
// mma_gemm (glu: mma_gemm_glu) with `f` around it: the RMSNorm (not with the add or GLU's bias)
// or the add (not with GLU).
void mma_gemm_fused(Impl& im, const float* x, int64_t N, const Tensor& w, const float* bias, float* y, bool glu,
                    Act act, const ProductFusion& f, const char* op);

// A convolution's few output steps as one weight-streaming pass: y [B, out, tout] (channels
// first, + bias) from the rows x [B·tout, in] (row b·tout + t: stream b's step t, im2col'd) and
// w [out, in] f32, where gemv_channels_fits (up to 8 rows, `in` a multiple of 4, aligned w;
// x must be 16-byte aligned). gemv.cu.
bool gemv_channels_fits(int64_t N, int64_t in, const float* w);
void gemv_channels(Impl& im, const float* x, int64_t N, const float* w, const float* bias, float* y, int64_t in,
                   int64_t out, int64_t tout, const char* op);

// ---- device helpers --------------------------------------------------------------------------

__device__ __forceinline__ float bf16_bits_to_f32(uint16_t h) {
  return __uint_as_float(static_cast<uint32_t>(h) << 16);
}
__device__ __forceinline__ float load_widen(const float* p) { return *p; }
__device__ __forceinline__ float load_widen(const uint16_t* p) { return bf16_bits_to_f32(*p); }
// Round to nearest even (NaN stays quiet), as the host's f32_to_bf16.
__device__ __forceinline__ void store_narrow(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_narrow(uint16_t* p, float v) {
  uint32_t u = __float_as_uint(v);
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    *p = static_cast<uint16_t>((u >> 16) | 0x40);
    return;
  }
  u += 0x7fffu + ((u >> 16) & 1u);
  *p = static_cast<uint16_t>(u >> 16);
}

// Two floats as bf16 hi and lo pairs (the lower k in the low half): hi + lo carries a float's
// value to ~16 bits, so tensor-core products on both stay near f32 (mma_gemm, wgmma_gemm).
__device__ __forceinline__ void split2(float a, float b, uint32_t& hi, uint32_t& lo) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
  const float2 hf = __bfloat1622float2(h);
  const __nv_bfloat162 l = __floats2bfloat162_rn(a - hf.x, b - hf.y);
  hi = *reinterpret_cast<const uint32_t*>(&h);
  lo = *reinterpret_cast<const uint32_t*>(&l);
}

// L2 policy for weights, read once per step: their lines are evicted first, so that streaming
// 14.75 GB a step does not push out what the step's many small kernels share (activations,
// scratch, the attention's cache rows). Measured at batch 1 (H100, step ms, same call): 6.41
// against 6.69 with the default policy, the depformer 1.15 against 1.32. (The same policy for
// the attention's cache rows was slower at the full context: batch 32 30.8 against 28.0 ms.)
__device__ __forceinline__ uint64_t evict_first_policy() {
  uint64_t pol;
  asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(pol));
  return pol;
}

// 16 bytes of weights, read once: no L1 allocation (nothing reuses them within a kernel), first
// out of L2.
__device__ __forceinline__ uint4 ld_stream(const uint4* p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.L2::cache_hint.v4.u32 {%0, %1, %2, %3}, [%4], %5;"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p), "l"(evict_first_policy()));
  return v;
}

// The same, kept before any later volatile asm (pdl_wait): weights a kernel fetches while the
// kernel before it is still running.
__device__ __forceinline__ uint4 ld_stream_early(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.L2::cache_hint.v4.u32 {%0, %1, %2, %3}, [%4], %5;"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p), "l"(evict_first_policy()));
  return v;
}

// Programmatic dependent launch (sm_90 and later; nothing on older GPUs). A kernel started with
// launch_early() may begin while the kernel before it on the stream is still running, once every
// block of that kernel has called pdl_trigger(): it may read only weights (nothing an earlier op
// writes) until pdl_wait(), which returns when the kernels before it have finished and their
// writes are visible. Kernels started by launch() wait as usual, so pdl_trigger() costs them
// nothing.
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// The activations of Act, in f32 (gated_activation and the gated products).
__device__ __forceinline__ float apply_act(float v, Act a) {
  switch (a) {
    case Act::Identity: return v;
    case Act::Gelu: return 0.5f * v * (1.f + erff(v * 0.70710678118654752440f));
    case Act::Silu: return v / (1.f + expf(-v));
    case Act::Relu: return v > 0.f ? v : 0.f;
    case Act::Sigmoid: return 1.f / (1.f + expf(-v));
    case Act::Tanh: return tanhf(v);
    case Act::Elu: return v > 0.f ? v : expm1f(v);
  }
  return v;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// `red` is 32 floats of shared memory.
__device__ __forceinline__ float block_sum(float v, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // red may still be read by a previous call
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float t = lane < nw ? red[lane] : 0.f;
  return warp_sum(t);
}

}  // namespace cuda
}  // namespace moshi
