// The CUDA backend's lifetime and memory: device selection, stream and cuBLAS handle, scratch,
// tensors in device memory, host <-> device copies and weight preparation.
//
// Weight layouts on the device are the original tensors' (kernels index them directly):
//   linear     [out, in] f32 or bf16 (bf16 kept: the LM at batch 1 is bound by reading weights)
//   embedding  [V, D] f32 or bf16
//   conv       [Cout, Cin/groups, K] f32 (conv1d is im2col + cuBLAS, or a direct kernel)
//   conv-tr    [Cin, Cout/groups, K] f32
//   vector     f32
#include <cstdlib>
#include <cstring>

#include "core/op_profile.h"
#include "runtime/cuda/common.cuh"

namespace moshi {

namespace cuda {

Impl::~Impl() {
  // Errors are ignored here: a destructor cannot report them, and at process exit the runtime
  // may already be unloading.
  if (stream) cudaStreamSynchronize(stream);
  for (auto& kv : stages) release_stage(kv.second);
  if (prof_a) cudaEventDestroy(prof_a);
  if (prof_b) cudaEventDestroy(prof_b);
  for (cudaEvent_t e : marks)
    if (e) cudaEventDestroy(e);
  tables.clear();
  if (blas_workspace) cudaFree(blas_workspace);
  for (Scratch& s : scratch)
    if (s.ptr) cudaFree(s.ptr);
  if (blas) cublasDestroy(blas);
  if (stream) cudaStreamDestroy(stream);
}

void* Impl::ensure_zeroed(Slot s, size_t bytes, const char* op) {
  const bool grows = scratch[s].cap < bytes || !scratch[s].ptr;
  void* p = ensure(s, bytes, op);
  if (grows) MOSHI_CUDA_CHECK(op, cudaMemsetAsync(p, 0, scratch[s].cap, stream));
  return p;
}

std::shared_ptr<void> Impl::alloc(size_t bytes, const char* op) {
  forbid_in_stage(op, true);
  const size_t n = bytes < 256 ? 256 : bytes;
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, n);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the (non-sticky) allocation error
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    fail("CUDA error in ", op, ": cannot allocate ", n, " bytes of device memory (", cudaGetErrorString(e), "; ",
         free_b >> 20, " MiB free of ", total_b >> 20, " MiB)");
  }
  const int dev_id = dev;
  std::shared_ptr<void> mem(p, [dev_id](void* q) {
    // cudaFree waits for queued work that may still use the memory. Freed on the device it
    // was allocated on, whichever device the freeing thread has current.
    int cur = -1;
    cudaGetDevice(&cur);
    if (cur != dev_id) cudaSetDevice(dev_id);
    cudaFree(q);
    if (cur != dev_id && cur >= 0) cudaSetDevice(cur);
  });
  MOSHI_CUDA_CHECK(op, cudaMemsetAsync(p, 0, n, stream));
  return mem;
}

void* Impl::ensure(Slot s, size_t bytes, const char* op) {
  Scratch& sc = scratch[s];
  if (sc.cap >= bytes && sc.ptr) return sc.ptr;
  forbid_in_stage(op, true);  // growing waits for the stream and reallocates: not inside a recording
  if (sc.ptr) {
    MOSHI_CUDA_CHECK(op, cudaStreamSynchronize(stream));
    MOSHI_CUDA_CHECK(op, cudaFree(sc.ptr));
    sc.ptr = nullptr;
    sc.cap = 0;
  }
  // Some headroom so that slowly growing requests do not reallocate every time.
  const size_t want = bytes + bytes / 4 + 256;
  const cudaError_t e = cudaMalloc(&sc.ptr, want);
  if (e != cudaSuccess) {
    cudaGetLastError();
    sc.ptr = nullptr;
    fail("CUDA error in ", op, ": cannot allocate ", want, " bytes of scratch (", cudaGetErrorString(e), ")");
  }
  sc.cap = want;
  return sc.ptr;
}

void Impl::profile_launch_begin(const char* op) {
  if (!prof_a) {
    MOSHI_CUDA_CHECK(op, cudaEventCreate(&prof_a));
    MOSHI_CUDA_CHECK(op, cudaEventCreate(&prof_b));
  }
  MOSHI_CUDA_CHECK(op, cudaEventRecord(prof_a, stream));
}

void Impl::profile_launch_end(const char* op) {
  MOSHI_CUDA_CHECK(op, cudaEventRecord(prof_b, stream));
  MOSHI_CUDA_CHECK(op, cudaEventSynchronize(prof_b));
  float ms = 0;
  MOSHI_CUDA_CHECK(op, cudaEventElapsedTime(&ms, prof_a, prof_b));
  op_profile_add(op, ms / 1e3, 0);
}

const int64_t* Impl::put_args(std::initializer_list<const std::vector<int64_t>*> parts, const char* op) {
  host_args.clear();
  for (const auto* p : parts) host_args.insert(host_args.end(), p->begin(), p->end());
  const size_t bytes = host_args.size() * sizeof(int64_t), at = cursor;
  if (mode != Mode::Eager) {
    cursor += (bytes + 15) / 16 * 16;
    note(0xa5a5u + bytes);
  }
  if (mode == Mode::Capture || mode == Mode::Replay) {
    // The recorded kernels read the stage's arena, which the graph's first node fills.
    MOSHI_CHECK(cursor <= active->arena_bytes, "cuda ", op,
                ": a recorded stage staged more host data than its first run (the op sequence changed)");
    if (bytes) std::memcpy(active->arena_host + at, host_args.data(), bytes);
    return reinterpret_cast<const int64_t*>(active->arena_dev + at);
  }
  int64_t* d = ensure_t<int64_t>(kHostArgs, static_cast<int64_t>(host_args.size()), op);
  if (!host_args.empty())
    MOSHI_CUDA_CHECK(op, cudaMemcpyAsync(d, host_args.data(), host_args.size() * sizeof(int64_t),
                                         cudaMemcpyHostToDevice, stream));
  return d;
}

}  // namespace cuda

using cuda::Impl;

CudaBackend::CudaBackend(int device_index) : impl_(std::make_unique<Impl>()) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    cudaGetLastError();
    fail("no CUDA device available (",
         e != cudaSuccess ? cudaGetErrorString(e) : "the CUDA driver reports no device", ")");
  }
  MOSHI_CHECK(device_index >= 0 && device_index < count, "CUDA device ", device_index, " does not exist (",
              count, " device", count == 1 ? "" : "s", " available: cuda:0",
              count > 1 ? " .. cuda:" + std::to_string(count - 1) : std::string(), ")");
  Impl& im = *impl_;
  im.dev = device_index;
  im.enter("init");
  cudaDeviceProp prop{};
  MOSHI_CUDA_CHECK("device properties", cudaGetDeviceProperties(&prop, device_index));
  im.sms = prop.multiProcessorCount > 0 ? prop.multiProcessorCount : 1;
  im.device_name = prop.name;
  const char* sync = std::getenv("MOSHI_CUDA_SYNC");
  im.sync_each = sync && std::strcmp(sync, "0") != 0 && sync[0] != '\0';
  MOSHI_CUDA_CHECK("stream", cudaStreamCreateWithFlags(&im.stream, cudaStreamNonBlocking));
  MOSHI_CUDA_CHECK("cuBLAS init", cublasCreate(&im.blas));
  MOSHI_CUDA_CHECK("cuBLAS init", cublasSetStream(im.blas, im.stream));
  // A workspace of our own, so that cuBLAS never allocates while a stage is being recorded.
  constexpr size_t kBlasWorkspace = size_t{32} << 20;
  MOSHI_CUDA_CHECK("cuBLAS init", cudaMalloc(&im.blas_workspace, kBlasWorkspace));
  MOSHI_CUDA_CHECK("cuBLAS init", cublasSetWorkspace(im.blas, im.blas_workspace, kBlasWorkspace));
  const char* graphs = std::getenv("MOSHI_CUDA_GRAPHS");
  // Profiling times each kernel alone, which recorded stages would hide.
  im.profile = op_profile_enabled();
  im.graphs = !im.sync_each && !im.profile && !(graphs && std::strcmp(graphs, "0") == 0);
  const char* pdl = std::getenv("MOSHI_CUDA_PDL");
  im.pdl = prop.major >= 9 && !im.sync_each && !im.profile && !(pdl && std::strcmp(pdl, "0") == 0);
  const char* wgmma = std::getenv("MOSHI_WGMMA");
#ifdef MOSHI_CUDA_SM90A
  im.wgmma = prop.major == 9 && prop.minor == 0 && !(wgmma && std::strcmp(wgmma, "0") == 0);
#else
  (void)wgmma;
#endif
  // f32 products stay f32: no TF32 (the results are compared with the CPU's).
  MOSHI_CUDA_CHECK("cuBLAS init", cublasSetMathMode(im.blas, CUBLAS_DEFAULT_MATH));
}

CudaBackend::~CudaBackend() = default;

std::string CudaBackend::name() const { return "cuda:" + std::to_string(impl_->dev) + " (" + impl_->device_name + ")"; }

void CudaBackend::synchronize() {
  impl_->enter(__func__);
  impl_->forbid_in_stage("synchronize");
  MOSHI_CUDA_CHECK("synchronize", cudaStreamSynchronize(impl_->stream));
}

static_assert(sizeof(Impl::marks) / sizeof(Impl::marks[0]) == Backend::kMarks, "one event a mark slot");

void CudaBackend::mark(int slot) {
  impl_->enter(__func__);
  impl_->forbid_in_stage("mark");
  cudaEvent_t& ev = impl_->marks[mark_slot(slot)];
  if (!ev) MOSHI_CUDA_CHECK("mark", cudaEventCreate(&ev));
  MOSHI_CUDA_CHECK("mark", cudaEventRecord(ev, impl_->stream));
}

double CudaBackend::marks_ms(int a, int b) {
  impl_->enter(__func__);
  cudaEvent_t ea = impl_->marks[mark_slot(a)], eb = impl_->marks[mark_slot(b)];
  MOSHI_CHECK(ea && eb, "cuda marks_ms: marks ", a, " and ", b, " were not both set");
  float ms = 0.f;
  MOSHI_CUDA_CHECK("marks_ms", cudaEventElapsedTime(&ms, ea, eb));
  return ms;
}

Tensor CudaBackend::empty(DType dtype, const Shape& shape) {
  impl_->enter(__func__);
  const int64_t n = shape_numel(shape);
  MOSHI_CHECK(n >= 0, "cuda empty: negative size ", shape_str(shape));
  std::shared_ptr<void> mem = impl_->alloc(static_cast<size_t>(n) * dtype_size(dtype), "empty");
  return Tensor(mem, mem.get(), dtype, shape, Device::CUDA);
}

void CudaBackend::zero(Tensor& t) {
  impl_->enter(__func__);
  cuda::need_cuda(t, "zero", "tensor");
  impl_->note(0x2e40u + t.nbytes());
  if (t.nbytes() && impl_->live()) MOSHI_CUDA_CHECK("zero", cudaMemsetAsync(t.data(), 0, t.nbytes(), impl_->stream));
}

void CudaBackend::upload(Tensor& dst, const void* host) {
  impl_->enter(__func__);
  cuda::need_cuda(dst, "upload", "destination");
  if (!dst.nbytes()) return;
  Impl& im = *impl_;
  im.forbid_in_stage("upload");
  MOSHI_CUDA_CHECK("upload", cudaMemcpyAsync(dst.data(), host, dst.nbytes(), cudaMemcpyHostToDevice, im.stream));
  // Pageable memory has been staged when cudaMemcpyAsync returns, so the caller may reuse it at
  // once; page-locked memory is read later by the DMA engine, so wait for the copy then.
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, host) == cudaSuccess && attr.type == cudaMemoryTypeHost)
    MOSHI_CUDA_CHECK("upload", cudaStreamSynchronize(im.stream));
  cudaGetLastError();  // cudaPointerGetAttributes may leave a non-sticky error behind
}

void CudaBackend::download(const Tensor& src, void* host) {
  impl_->enter(__func__);
  cuda::need_cuda(src, "download", "source");
  if (!src.nbytes()) return;
  impl_->forbid_in_stage("download");
  MOSHI_CUDA_CHECK("download",
                   cudaMemcpyAsync(host, src.data(), src.nbytes(), cudaMemcpyDeviceToHost, impl_->stream));
  MOSHI_CUDA_CHECK("download", cudaStreamSynchronize(impl_->stream));
}

void CudaBackend::copy(Tensor& dst, const Tensor& src) {
  impl_->enter(__func__);
  MOSHI_CHECK(dst.nbytes() == src.nbytes(), "copy: size mismatch ", shape_str(dst.shape()), " vs ",
              shape_str(src.shape()));
  cuda::need_cuda(dst, "copy", "destination");
  cuda::need_cuda(src, "copy", "source");
  const size_t n = src.nbytes();
  if (!n || dst.data() == src.data()) return;
  Impl& im = *impl_;
  im.note(0xc0c0u + n);
  if (!im.live()) return;
  const char* d = static_cast<const char*>(dst.data());
  const char* s = static_cast<const char*>(src.data());
  if (d < s + n && s < d + n) {  // overlapping ranges (memmove semantics): go through scratch
    void* tmp = im.ensure(cuda::kTmp, n, "copy");
    MOSHI_CUDA_CHECK("copy", cudaMemcpyAsync(tmp, s, n, cudaMemcpyDeviceToDevice, im.stream));
    MOSHI_CUDA_CHECK("copy", cudaMemcpyAsync(dst.data(), tmp, n, cudaMemcpyDeviceToDevice, im.stream));
    return;
  }
  MOSHI_CUDA_CHECK("copy", cudaMemcpyAsync(dst.data(), s, n, cudaMemcpyDeviceToDevice, im.stream));
}

namespace {

// A host (or already device) float tensor in device memory as `shape`: f32, or bf16 when
// `keep_bf16` and the source is bf16. F16 and (otherwise) bf16 are widened on the host.
Tensor to_device(CudaBackend& be, Impl& im, const Tensor& w, bool keep_bf16, const Shape& shape, const char* op) {
  MOSHI_CHECK(w.defined() || w.numel() == 0, "cuda ", op, ": undefined tensor");
  const DType dt = w.dtype();
  MOSHI_CHECK(dt == DType::F32 || dt == DType::BF16 || dt == DType::F16, "cuda ", op,
              ": weights must be f32, bf16 or f16, got ", dtype_name(dt));
  const DType out_dt = keep_bf16 && dt == DType::BF16 ? DType::BF16 : DType::F32;
  if (w.device() == Device::CUDA) {
    MOSHI_CHECK(dt == out_dt, "cuda ", op, ": a device tensor of type ", dtype_name(dt), " cannot be converted");
    return w.reshape(shape);
  }
  Tensor t = be.empty(out_dt, shape);
  if (dt == out_dt) {
    be.upload(t, w.data());
    return t;
  }
  std::vector<float> f(static_cast<size_t>(w.numel()));
  const uint16_t* h = w.ptr<uint16_t>();
  for (size_t i = 0; i < f.size(); ++i) f[i] = dt == DType::BF16 ? bf16_to_f32(h[i]) : f16_to_f32(h[i]);
  be.upload(t, f.data());
  return t;
}

}  // namespace

Tensor CudaBackend::prepare_linear(const Tensor& w) {
  impl_->enter(__func__);
  MOSHI_CHECK(w.ndim() >= 2 && w.dim(0) > 0, "cuda prepare_linear: weight ", shape_str(w.shape()), " is not [out, in]");
  const int64_t out = w.dim(0), in = w.numel() / out;
  return to_device(*this, *impl_, w, true, {out, in}, "prepare_linear");
}

Tensor CudaBackend::prepare_embedding(const Tensor& w) {
  impl_->enter(__func__);
  MOSHI_CHECK(w.ndim() == 2, "cuda prepare_embedding: table ", shape_str(w.shape()), " is not [V, D]");
  return to_device(*this, *impl_, w, true, w.shape(), "prepare_embedding");
}

Tensor CudaBackend::prepare_conv(const Tensor& w, int groups) {
  impl_->enter(__func__);
  MOSHI_CHECK(w.ndim() == 3 && groups >= 1, "cuda prepare_conv: weight ", shape_str(w.shape()),
              " is not [Cout, Cin/g, K]");
  return to_device(*this, *impl_, w, false, w.shape(), "prepare_conv");
}

Tensor CudaBackend::prepare_conv_transpose(const Tensor& w, int groups) {
  impl_->enter(__func__);
  const char* op = "prepare_conv_transpose";
  MOSHI_CHECK(w.ndim() == 3 && groups >= 1, "cuda ", op, ": weight ", shape_str(w.shape()), " is not [Cin, Cout/g, K]");
  if (groups != 1) return to_device(*this, *impl_, w, false, w.shape(), op);  // the overlap kernel reads it as is
  // Ungrouped: [Cin, Cout, K] -> [Cout·K, Cin], one row per output tap, so that the op's product
  // is a plain one (a GEMV for a few frames).
  MOSHI_CHECK(w.device() != Device::CUDA, "cuda ", op, ": an ungrouped weight must come from the host");
  const Tensor f = to_device(*this, *impl_, w, false, w.shape(), op);
  const int64_t cin = w.dim(0), ck = w.dim(1) * w.dim(2);
  std::vector<float> host(static_cast<size_t>(cin * ck)), t(host.size());
  download(f, host.data());
  for (int64_t i = 0; i < cin; ++i)
    for (int64_t j = 0; j < ck; ++j) t[j * cin + i] = host[i * ck + j];
  Tensor out = empty(DType::F32, {ck, cin});
  upload(out, t.data());
  return out;
}

Tensor CudaBackend::prepare_vector(const Tensor& w) {
  impl_->enter(__func__);
  return to_device(*this, *impl_, w, false, w.shape(), "prepare_vector");
}

}  // namespace moshi
