#include "runtime/cpu/cpu_backend.h"

#include <algorithm>
#include <cstring>
#include <thread>
#include <vector>

#include "core/error.h"
#include "runtime/cpu/kernels.h"
#include "runtime/fault_backend.h"
#ifdef MOSHI_HAVE_CUDA
#include "runtime/cuda/cuda_backend.h"
#endif
#include "weights/safetensors.h"

extern "C" void openblas_set_num_threads(int);

namespace moshi {

CpuBackend::CpuBackend(int threads) : pool_(threads) {
  // Threads are ours: every BLAS call is made from one pool worker on its own block.
  openblas_set_num_threads(1);
}

Tensor CpuBackend::empty(DType dtype, const Shape& shape) { return Tensor::zeros(dtype, shape); }

void CpuBackend::zero(Tensor& t) { std::memset(t.data(), 0, t.nbytes()); }

void CpuBackend::upload(Tensor& dst, const void* host) { std::memcpy(dst.data(), host, dst.nbytes()); }

void CpuBackend::download(const Tensor& src, void* host) { std::memcpy(host, src.data(), src.nbytes()); }

void CpuBackend::copy(Tensor& dst, const Tensor& src) {
  MOSHI_CHECK(dst.nbytes() == src.nbytes(), "copy: size mismatch ", shape_str(dst.shape()), " vs ",
              shape_str(src.shape()));
  std::memmove(dst.data(), src.data(), src.nbytes());
}

// f32 weights from a mapped file are used in place; other float types are converted once.
static Tensor as_f32(const Tensor& w) { return w.dtype() == DType::F32 ? w : to_f32(w); }

// [out, in] (row stride ldw) -> packed panels [panels(out), in, kPanel], panels spread over the pool.
template <typename T, typename F>
static Tensor packed(ThreadPool& pool, DType dt, const T* w, int64_t out, int64_t in, int64_t ldw, F pack) {
  const int64_t P = cpu::panels(out);
  Tensor t = Tensor::zeros(dt, {P, in, cpu::kPanel});
  const int parts = static_cast<int>(std::min<int64_t>(P, pool.size()));
  pool.parallel_for(parts, [&](int i) {
    int64_t p0, p1;
    split_range(P, parts, i, 1, &p0, &p1);
    if (p1 > p0) pack(w, out, in, ldw, t.template ptr<T>(), p0, p1);
  });
  return t;
}
static Tensor packed(ThreadPool& pool, const float* w, int64_t out, int64_t in, int64_t ldw) {
  return packed(pool, DType::F32, w, out, in, ldw,
                [](const float* a, int64_t o, int64_t i, int64_t l, float* d, int64_t p0, int64_t p1) {
                  cpu::pack_panels(a, o, i, l, d, p0, p1);
                });
}

Tensor CpuBackend::prepare_linear(const Tensor& w) {
  const int64_t out = w.dim(0), in = w.numel() / out;
  if (w.dtype() == DType::BF16)  // kept in bf16: the products are bound by reading weights
    return packed(pool_, DType::BF16, w.ptr<uint16_t>(), out, in, in,
                  [](const uint16_t* a, int64_t o, int64_t i, int64_t l, uint16_t* d, int64_t p0, int64_t p1) {
                    cpu::pack_panels_bf16(a, o, i, l, d, p0, p1);
                  });
  Tensor f = as_f32(w);
  return packed(pool_, f.f32(), out, in, in);
}

Tensor CpuBackend::prepare_embedding(const Tensor& w) {
  return w.dtype() == DType::BF16 || w.dtype() == DType::F32 ? w : to_f32(w);
}

Tensor CpuBackend::prepare_conv(const Tensor& w, int groups) {
  Tensor f = as_f32(w);
  if (groups != 1) return f;  // grouped convs run a direct loop over the original layout
  return packed(pool_, f.f32(), f.dim(0), f.dim(1) * f.dim(2), f.dim(1) * f.dim(2));  // [Cout, Cin·K]
}

Tensor CpuBackend::prepare_vector(const Tensor& w) { return as_f32(w); }

Tensor CpuBackend::prepare_conv_transpose(const Tensor& w, int groups) {
  Tensor f = as_f32(w);
  if (groups != 1) return f;
  // [Cin, Cout, K] -> [Cout·K, Cin]: one row per output tap, so the op is a plain matmul.
  const int64_t cin = f.dim(0), ck = f.dim(1) * f.dim(2);
  std::vector<float> t(static_cast<size_t>(ck * cin));
  const float* s = f.f32();
  for (int64_t i = 0; i < cin; ++i)
    for (int64_t j = 0; j < ck; ++j) t[j * cin + i] = s[i * ck + j];
  return packed(pool_, t.data(), ck, cin, cin);
}

std::shared_ptr<Backend> make_backend(const BackendOptions& opts) {
  std::string base, fault_op;
  int64_t fault_call = 0;
  if (parse_fault_spec(opts.device, &base, &fault_op, &fault_call)) {  // diagnostics: see fault_backend.h
    BackendOptions inner = opts;
    inner.device = base;
    return make_faulty_backend(make_backend(inner), fault_op, fault_call);
  }
  if (opts.device == "cpu") {
    int n = opts.threads > 0 ? opts.threads : static_cast<int>(std::thread::hardware_concurrency());
    if (n <= 0) n = 1;
    return std::make_shared<CpuBackend>(n);
  }
  // "cuda" or "cuda:N"
  if (opts.device.rfind("cuda", 0) == 0) {
    const std::string rest = opts.device.substr(4);
    int index = 0;
    if (!rest.empty()) {
      const bool digits = rest.size() >= 2 && rest.size() <= 10 && rest[0] == ':' &&
                          std::all_of(rest.begin() + 1, rest.end(), [](char c) { return c >= '0' && c <= '9'; });
      if (!digits) fail("unknown device '", opts.device, "' (expected cpu, cuda or cuda:N)");
      index = std::stoi(rest.substr(1));
    }
#ifdef MOSHI_HAVE_CUDA
    return std::make_shared<CudaBackend>(index);
#else
    (void)index;
    fail("this build has no CUDA support (rebuild with the CUDA toolkit installed)");
#endif
  }
#ifdef MOSHI_HAVE_CUDA
  fail("unknown device '", opts.device, "' (this build supports: cpu, cuda, cuda:N)");
#else
  fail("unknown device '", opts.device, "' (this build supports: cpu)");
#endif
}

}  // namespace moshi
