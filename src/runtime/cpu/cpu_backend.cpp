#include "runtime/cpu/cpu_backend.h"

#include <cstring>
#include <thread>
#include <vector>

#include "core/error.h"
#include "runtime/cpu/kernels.h"
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

// [out, in] (row stride ldw) -> packed panels [panels(out), in, kPanel].
static Tensor packed(const float* w, int64_t out, int64_t in, int64_t ldw) {
  Tensor t = Tensor::zeros(DType::F32, {cpu::panels(out), in, cpu::kPanel});
  cpu::pack_panels(w, out, in, ldw, t.f32());
  return t;
}

Tensor CpuBackend::prepare_linear(const Tensor& w) {
  const int64_t out = w.dim(0), in = w.numel() / out;
  if (w.dtype() == DType::BF16) {  // kept in bf16: the products are bound by reading weights
    Tensor t = Tensor::zeros(DType::BF16, {cpu::panels(out), in, cpu::kPanel});
    cpu::pack_panels_bf16(w.ptr<uint16_t>(), out, in, in, t.ptr<uint16_t>());
    return t;
  }
  Tensor f = as_f32(w);
  return packed(f.f32(), out, in, in);
}

Tensor CpuBackend::prepare_embedding(const Tensor& w) {
  return w.dtype() == DType::BF16 || w.dtype() == DType::F32 ? w : to_f32(w);
}

Tensor CpuBackend::prepare_conv(const Tensor& w, int groups) {
  Tensor f = as_f32(w);
  if (groups != 1) return f;  // grouped convs run a direct loop over the original layout
  return packed(f.f32(), f.dim(0), f.dim(1) * f.dim(2), f.dim(1) * f.dim(2));  // [Cout, Cin·K]
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
  return packed(t.data(), ck, cin, cin);
}

std::shared_ptr<Backend> make_backend(const BackendOptions& opts) {
  if (opts.device == "cpu") {
    int n = opts.threads > 0 ? opts.threads : static_cast<int>(std::thread::hardware_concurrency());
    if (n <= 0) n = 1;
    return std::make_shared<CpuBackend>(n);
  }
  fail("unknown device '", opts.device, "' (this build supports: cpu)");
}

}  // namespace moshi
