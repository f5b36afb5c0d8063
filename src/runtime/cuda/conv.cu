// Streaming convolutions on the GPU.
//
// conv1d reads the virtual time concatenation of the history `prev` [B, Cin, P] and the input
// x [B, Cin, T] without building it. Ungrouped convs gather im2col columns [B, Cin·K, Tout] and
// multiply by the weight [Cout, Cin·K] in one strided-batched cuBLAS call (f32 compute);
// grouped convs (few and small in Mimi) run a direct kernel, one thread per output.
//
// conv_transpose1d follows the CPU exactly: the full transposed conv of this call's frames,
// plus the carried `partial` overlap on its first K-stride steps; the first T·stride steps (+
// bias) are the output and the last K-stride (without bias) become the new partial. Ungrouped
// (weights stored [Cout·K, Cin]): Z [B, T, Cout·K] = xᵀ · wᵀ (a GEMV pass for a few frames,
// cuBLAS otherwise), then an overlap-add kernel gathers each output step
// from the at most ceil(K/stride) frames that touch it. New states are written to scratch and
// copied over the old ones, because the old values are still being read.
#include "runtime/cuda/common.cuh"

namespace moshi {
namespace cuda {
namespace {

// concat(prev, act(x))[b, c, u]: the history already holds activated values.
__device__ __forceinline__ float src_at(const float* prev, const float* x, int64_t b, int64_t c, int64_t u,
                                        int64_t cin, int64_t P, int64_t T, Act act) {
  return u < P ? prev[(b * cin + c) * P + u] : apply_act(x[(b * cin + c) * T + (u - P)], act);
}

// col[b, ci·K + k, t] = concat(prev, act(x))[b, ci, t·stride + k·dilation] (time_major:
// col[b, t, ci·K + k], the rows of a few-step product); with `bias`, also y[b, co, t] = bias[co]
// (`add`: y[b, co, t] += bias[co]; the product then adds onto it).
__global__ void im2col_kernel(const float* __restrict__ prev, const float* __restrict__ x, float* __restrict__ col,
                              int64_t B, int64_t cin, int64_t P, int64_t T, int64_t K, int64_t Tout, int stride,
                              int dilation, Act act, const float* __restrict__ bias, float* __restrict__ y,
                              int64_t cout, bool time_major, bool add) {
  const int64_t CK = cin * K;
  MOSHI_GRID_STRIDE(i, B * CK * Tout) {
    const int64_t t = time_major ? (i / CK) % Tout : i % Tout, j = time_major ? i % CK : (i / Tout) % CK,
                  b = i / (Tout * CK);
    const int64_t ci = j / K, k = j % K;
    col[i] = src_at(prev, x, b, ci, t * stride + k * dilation, cin, P, T, act);
  }
  if (bias) {
    MOSHI_GRID_STRIDE(i, B * cout * Tout) y[i] = (add ? y[i] : 0.f) + bias[(i / Tout) % cout];
  }
}

__global__ void conv_grouped_kernel(const float* __restrict__ prev, const float* __restrict__ x,
                                    const float* __restrict__ w, const float* __restrict__ bias, float* __restrict__ y,
                                    int64_t B, int64_t cin, int64_t cout, int64_t P, int64_t T, int64_t K,
                                    int64_t Tout, int stride, int dilation, int groups, Act act) {
  const int64_t cig = cin / groups, cog = cout / groups;
  MOSHI_GRID_STRIDE(i, B * cout * Tout) {
    const int64_t t = i % Tout, co = (i / Tout) % cout, b = i / (Tout * cout), g = co / cog;
    float s = bias ? bias[co] : 0.f;
    for (int64_t ci = 0; ci < cig; ++ci)
      for (int64_t k = 0; k < K; ++k)
        s += w[(co * cig + ci) * K + k] * src_at(prev, x, b, g * cig + ci, t * stride + k * dilation, cin, P, T, act);
    y[i] = s;
  }
}

// y[b, c, t] += bias[c]
__global__ void add_channel_bias_kernel(float* __restrict__ y, const float* __restrict__ bias, int64_t B, int64_t C,
                                        int64_t T) {
  MOSHI_GRID_STRIDE(i, B * C * T) { y[i] += bias[(i / T) % C]; }
}

// dst[bc, j] = last P frames of concat(prev, act(x)) (dst may be prev itself when T >= P).
__global__ void history_kernel(const float* prev, const float* __restrict__ x, float* dst, int64_t BC,
                               int64_t P, int64_t T, Act act) {
  MOSHI_GRID_STRIDE(i, BC * P) {
    const int64_t j = i % P, bc = i / P, u = T + j;
    dst[i] = u < P ? prev[bc * P + u] : apply_act(x[bc * T + (u - P)], act);
  }
}

__global__ void replicate_kernel(float* __restrict__ prev, const float* __restrict__ x,
                                 const int64_t* __restrict__ first, int64_t B, int64_t C, int64_t P, int64_t T) {
  MOSHI_GRID_STRIDE(i, B * C * P) {
    const int64_t bc = i / P, b = bc / C;
    if (first[b]) prev[i] = x[bc * T];
  }
}

// One output step u of stream b, channel co over the full transposed conv (length
// (T-1)·stride + K): sum of the frames t with 0 <= u - t·stride < K, plus the carried partial,
// then split into the output and the new partial.
__global__ void convtr_overlap_kernel(const float* __restrict__ z, const float* __restrict__ x,
                                      const float* __restrict__ w, const float* __restrict__ bias,
                                      const float* __restrict__ partial, float* __restrict__ new_partial,
                                      float* __restrict__ y, int64_t B, int64_t cin, int64_t cout, int64_t T,
                                      int64_t K, int stride, int groups) {
  const int64_t full = (T - 1) * stride + K, tail = K - stride, TS = T * stride;
  const int64_t cig = cin / groups, cog = cout / groups;
  MOSHI_GRID_STRIDE(i, B * cout * full) {
    const int64_t u = i % full, co = (i / full) % cout, b = i / (full * cout);
    const int64_t t_lo = u >= K ? (u - K + stride) / stride : 0, t_hi = min(T - 1, u / stride);
    float acc = 0.f;
    for (int64_t t = t_lo; t <= t_hi; ++t) {
      const int64_t j = u - t * stride;
      if (z) {  // ungrouped: Z[b, t, co·K + j]
        acc += z[((b * T + t) * cout + co) * K + j];
      } else {  // grouped: weights [Cin, Cout/groups, K]
        const int64_t g = co / cog, col = co % cog;
        float s = 0.f;
        for (int64_t ci = g * cig; ci < (g + 1) * cig; ++ci)
          s += x[(b * cin + ci) * T + t] * w[(ci * cog + col) * K + j];
        acc += s;
      }
    }
    if (u < tail) acc += partial[(b * cout + co) * tail + u];
    if (u < TS)
      y[(b * cout + co) * TS + u] = acc + (bias ? bias[co] : 0.f);
    else
      new_partial[(b * cout + co) * tail + (u - TS)] = acc;
  }
}

}  // namespace
}  // namespace cuda

using cuda::grid_for;
using cuda::launch;

namespace {
// conv1d over concat(prev, act(x)), written to y (`add`: added onto y; ungrouped convs only).
void run_conv1d(cuda::Impl& im, const char* op, const Tensor& prev, const Tensor& x, Act act, const Tensor& w,
                const Tensor* bias, int cin, int cout, int kernel, int stride, int dilation, int groups, Tensor& y,
                bool add = false) {
  const int64_t B = x.dim(0), T = x.dim(2), P = prev.numel() ? prev.dim(2) : 0, Tout = T / stride;
  MOSHI_CHECK(x.dim(1) == cin && T % stride == 0 && P == (kernel - 1) * dilation + 1 - stride && y.dim(0) == B &&
                  y.dim(1) == cout && y.dim(2) == Tout,
              "conv1d: bad shapes x ", shape_str(x.shape()), " prev ", shape_str(prev.shape()), " y ",
              shape_str(y.shape()));
  MOSHI_CHECK(groups >= 1 && cin % groups == 0 && cout % groups == 0 &&
                  w.numel() == static_cast<int64_t>(cout) * (cin / groups) * kernel,
              "cuda conv1d: weight ", shape_str(w.shape()), " does not match ", cin, " -> ", cout, " channels, kernel ",
              kernel, ", groups ", groups);
  const float* px = cuda::f32_of(x, op, "input");
  const float* pp = P ? cuda::f32_of(prev, op, "history") : nullptr;
  const float* pw = cuda::f32_of(w, op, "weight");
  const float* pb = bias ? cuda::f32_of(*bias, op, "bias") : nullptr;
  float* py = cuda::f32_of(y, op, "output");
  if (B * Tout * cout == 0) return;
  MOSHI_CHECK(!add || groups == 1, "cuda conv1d: only an ungrouped conv adds onto its output");
  if (groups != 1) {
    launch(im, op, cuda::conv_grouped_kernel, dim3(grid_for(im, B * cout * Tout)), dim3(256), 0, pp, px, pw, pb, py,
           B, int64_t{cin}, int64_t{cout}, P, T, int64_t{kernel}, Tout, stride, dilation, groups, act);
    return;
  }
  const int64_t CK = static_cast<int64_t>(cin) * kernel;
  const float* col = px;  // a pointwise conv of x itself (no history, no activation) reads x as it is
  const bool gathered = !(P == 0 && kernel == 1 && stride == 1) || act != Act::Identity;
  // A few output steps (Mimi's 12.5 and 25 Hz layers): the gathered steps are the rows of one
  // weight-streaming pass that writes y channels-first with its bias (cuBLAS would split the
  // long reduction over several kernels and read at a fraction of the bandwidth).
  if (!add && gathered && cuda::gemv_channels_fits(B * Tout, CK, pw)) {
    float* c = im.ensure_t<float>(cuda::kCol, B * CK * Tout, op);
    launch(im, op, cuda::im2col_kernel, dim3(grid_for(im, B * CK * Tout)), dim3(256), 0, pp, px, c, B, int64_t{cin},
           P, T, int64_t{kernel}, Tout, stride, dilation, act, static_cast<const float*>(nullptr), py, int64_t{cout},
           true, false);
    cuda::gemv_channels(im, c, B * Tout, pw, pb, py, CK, cout, Tout, op);
    return;
  }
  if (gathered) {  // the gather also starts y at the bias, which the product then adds onto
    float* c = im.ensure_t<float>(cuda::kCol, B * CK * Tout, op);
    launch(im, op, cuda::im2col_kernel, dim3(grid_for(im, std::max(B * CK * Tout, B * cout * Tout))), dim3(256), 0,
           pp, px, c, B, int64_t{cin}, P, T, int64_t{kernel}, Tout, stride, dilation, act, pb, py, int64_t{cout},
           false, add);
    col = c;
  }
  MOSHI_CHECK(CK <= INT32_MAX && Tout <= INT32_MAX && B <= INT32_MAX, "cuda conv1d: too large");
  // Column-major view: y_b [Tout, Cout] (ld Tout) = col_b [Tout, CK] (ld Tout) · W [CK, Cout] (ld CK).
  const float one = 1.f, zero = 0.f;
  const bool onto_y = (gathered && pb) || add;  // y already holds the bias and/or what it adds to
  im.note(0xb1a6u ^ (static_cast<uint64_t>(CK) << 16) ^ (static_cast<uint64_t>(Tout) << 40) ^ (onto_y ? 1u : 0u));
  if (im.live())
  MOSHI_CUDA_CHECK(op, cublasGemmStridedBatchedEx(
                           im.blas, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(Tout), cout, static_cast<int>(CK), &one,
                           col, CUDA_R_32F, static_cast<int>(Tout), CK * Tout, pw, CUDA_R_32F, static_cast<int>(CK), 0,
                           onto_y ? &one : &zero, py, CUDA_R_32F, static_cast<int>(Tout),
                           static_cast<int64_t>(cout) * Tout, static_cast<int>(B), CUBLAS_COMPUTE_32F,
                           CUBLAS_GEMM_DEFAULT));
  if (pb && !gathered)
    launch(im, op, cuda::add_channel_bias_kernel, dim3(grid_for(im, B * cout * Tout)), dim3(256), 0, py, pb, B,
           int64_t{cout}, Tout);
}

// prev <- the last P frames of concat(prev, act(x)).
void run_history(cuda::Impl& im, const char* op, Tensor& prev, const Tensor& x, Act act) {
  if (prev.numel() == 0) return;
  const int64_t B = x.dim(0), C = x.dim(1), T = x.dim(2), P = prev.dim(2);
  MOSHI_CHECK(prev.dim(0) == B && prev.dim(1) == C, "conv_history_update: history ", shape_str(prev.shape()),
              " does not match input ", shape_str(x.shape()));
  float* pp = cuda::f32_of(prev, op, "history");
  const float* px = cuda::f32_of(x, op, "input");
  if (T >= P) {  // all from x: in place
    launch(im, op, cuda::history_kernel, dim3(grid_for(im, B * C * P)), dim3(256), 0, pp, px, pp, B * C, P, T, act);
    return;
  }
  float* tmp = im.ensure_t<float>(cuda::kTmp, B * C * P, op);
  launch(im, op, cuda::history_kernel, dim3(grid_for(im, B * C * P)), dim3(256), 0, pp, px, tmp, B * C, P, T, act);
  im.note(0xc0c1u + prev.nbytes());
  if (im.live()) MOSHI_CUDA_CHECK(op, cudaMemcpyAsync(pp, tmp, prev.nbytes(), cudaMemcpyDeviceToDevice, im.stream));
}
}  // namespace

void CudaBackend::conv1d(const Tensor& prev, const Tensor& x, const Tensor& w, const Tensor* bias, int cin, int cout,
                         int kernel, int stride, int dilation, int groups, Tensor& y) {
  impl_->enter(__func__);
  run_conv1d(*impl_, "conv1d", prev, x, Act::Identity, w, bias, cin, cout, kernel, stride, dilation, groups, y);
}

void CudaBackend::conv_history_update(Tensor& prev, const Tensor& x) {
  impl_->enter(__func__);
  run_history(*impl_, "conv_history_update", prev, x, Act::Identity);
}

void CudaBackend::conv1d_step(Tensor& prev, const Tensor& x, Act act, const Tensor& w, const Tensor* bias, int cin,
                              int cout, int kernel, int stride, int dilation, int groups, Tensor& scratch, Tensor& y) {
  impl_->enter(__func__);
  // The conv reads the history before it is replaced: two launches in stream order.
  run_conv1d(*impl_, "conv1d_step", prev, x, act, w, bias, cin, cout, kernel, stride, dilation, groups, y);
  run_history(*impl_, "conv1d_step", prev, x, act);
}

void CudaBackend::conv1d_step_add(Tensor& prev, const Tensor& x, Act act, const Tensor& w, const Tensor* bias, int cin,
                                  int cout, int kernel, int stride, int dilation, int groups, Tensor& scratch,
                                  Tensor& tmp, Tensor& y) {
  if (groups != 1) {
    Backend::conv1d_step_add(prev, x, act, w, bias, cin, cout, kernel, stride, dilation, groups, scratch, tmp, y);
    return;
  }
  impl_->enter(__func__);
  run_conv1d(*impl_, "conv1d_step_add", prev, x, act, w, bias, cin, cout, kernel, stride, dilation, groups, y, true);
  run_history(*impl_, "conv1d_step_add", prev, x, act);
}

void CudaBackend::conv_history_replicate(Tensor& prev, const Tensor& x, const std::vector<uint8_t>& first) {
  if (prev.numel() == 0) return;
  const int64_t B = x.dim(0), C = x.dim(1), T = x.dim(2), P = prev.dim(2);
  MOSHI_CHECK(static_cast<int64_t>(first.size()) >= B && prev.dim(0) == B && prev.dim(1) == C && T > 0,
              "conv_history_replicate: bad shapes");
  // Launched even when no stream is at its first frame, so that every frame runs the same ops
  // (a recorded stage replays them all).
  impl_->enter(__func__);
  cuda::Impl& im = *impl_;
  const char* op = "conv_history_replicate";
  std::vector<int64_t> f(first.begin(), first.begin() + B);
  const int64_t* pf = im.put_args({&f}, op);
  launch(im, op, cuda::replicate_kernel, dim3(grid_for(im, B * C * P)), dim3(256), 0, cuda::f32_of(prev, op, "history"),
         cuda::f32_of(x, op, "input"), pf, B, C, P, T);
}

void CudaBackend::conv_transpose1d(const Tensor& x, const Tensor& w, const Tensor* bias, int cin, int cout, int kernel,
                                   int stride, int groups, Tensor& partial, Tensor& y) {
  impl_->enter(__func__);
  cuda::Impl& im = *impl_;
  const char* op = "conv_transpose1d";
  const int64_t B = x.dim(0), T = x.dim(2), tail = kernel - stride, full = (T - 1) * stride + kernel;
  MOSHI_CHECK(x.dim(1) == cin && kernel >= stride && y.dim(0) == B && y.dim(1) == cout && y.dim(2) == T * stride &&
                  partial.dim(2) == tail,
              "conv_transpose1d: bad shapes x ", shape_str(x.shape()), " y ", shape_str(y.shape()));
  MOSHI_CHECK(groups >= 1 && cin % groups == 0 && cout % groups == 0 &&
                  w.numel() == static_cast<int64_t>(cin) * (cout / groups) * kernel,
              "cuda conv_transpose1d: weight ", shape_str(w.shape()), " does not match ", cin, " -> ", cout,
              " channels, kernel ", kernel, ", groups ", groups);
  if (B * T == 0) return;
  const float* px = cuda::f32_of(x, op, "input");
  const float* pw = cuda::f32_of(w, op, "weight");
  const float* pb = bias ? cuda::f32_of(*bias, op, "bias") : nullptr;
  float* py = cuda::f32_of(y, op, "output");
  float* ppart = tail ? cuda::f32_of(partial, op, "partial") : nullptr;
  const float* z = nullptr;
  if (groups == 1) {  // w [Cout·K, Cin] (prepare_conv_transpose)
    const int64_t CK = static_cast<int64_t>(cout) * kernel;
    MOSHI_CHECK(CK <= INT32_MAX && T <= INT32_MAX && B <= INT32_MAX, "cuda conv_transpose1d: too large");
    float* zb = im.ensure_t<float>(cuda::kZ, B * T * CK, op);
    if (B * T <= cuda::kGemvRows) {
      // A few frames: Z [B·T, CK] = the frames as rows · wᵀ, one weight-streaming pass (the
      // frames gathered time-major first where there are several per stream).
      const float* rows = px;
      if (T > 1) {
        float* c = im.ensure_t<float>(cuda::kCol, B * T * cin, op);
        launch(im, op, cuda::im2col_kernel, dim3(grid_for(im, B * T * cin)), dim3(256), 0,
               static_cast<const float*>(nullptr), px, c, B, int64_t{cin}, int64_t{0}, T, int64_t{1}, T, 1, 1,
               Act::Identity, static_cast<const float*>(nullptr), static_cast<float*>(nullptr), int64_t{0}, true,
               false);
        rows = c;
      }
      cuda::matmul(im, rows, B * T, w.reshape({CK, cin}), nullptr, zb, op);
    } else {
      // Column-major view: Z_b [CK, T] (ld CK) = (w [Cin, CK] (ld Cin))ᵀ · x_bᵀ, x_b stored [T, Cin] (ld T).
      const float one = 1.f, zero = 0.f;
      im.note(0xb1a7u ^ (static_cast<uint64_t>(CK) << 16) ^ (static_cast<uint64_t>(T) << 40));
      if (im.live())
        MOSHI_CUDA_CHECK(op, cublasGemmStridedBatchedEx(
                                 im.blas, CUBLAS_OP_T, CUBLAS_OP_T, static_cast<int>(CK), static_cast<int>(T), cin,
                                 &one, pw, CUDA_R_32F, cin, 0, px, CUDA_R_32F, static_cast<int>(T),
                                 static_cast<int64_t>(cin) * T, &zero, zb, CUDA_R_32F, static_cast<int>(CK), T * CK,
                                 static_cast<int>(B), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
    z = zb;
  }
  float* newp = tail ? im.ensure_t<float>(cuda::kTmp, B * cout * tail, op) : nullptr;
  launch(im, op, cuda::convtr_overlap_kernel, dim3(grid_for(im, B * cout * full)), dim3(256), 0, z, px, pw, pb, ppart,
         newp, py, B, int64_t{cin}, int64_t{cout}, T, int64_t{kernel}, stride, groups);
  if (tail) {
    im.note(0xc0c2u + static_cast<uint64_t>(B * cout * tail));
    if (im.live())
      MOSHI_CUDA_CHECK(op, cudaMemcpyAsync(ppart, newp, static_cast<size_t>(B * cout * tail) * sizeof(float),
                                           cudaMemcpyDeviceToDevice, im.stream));
  }
}

}  // namespace moshi
