// The CPU backend: plain f32 implementations of every op (the oracle other backends are tested
// against), with SIMD and threads where they pay.
#pragma once
#include <memory>

#include "core/thread_pool.h"
#include "runtime/backend.h"

namespace moshi {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads);
  std::string name() const override { return "cpu"; }
  Device device() const override { return Device::CPU; }
  int threads() const override { return pool_.size(); }
  ThreadPool& pool() { return pool_; }

  Tensor empty(DType dtype, const Shape& shape) override;
  void zero(Tensor& t) override;
  void upload(Tensor& dst, const void* host) override;
  void download(const Tensor& src, void* host) override;
  void copy(Tensor& dst, const Tensor& src) override;

  Tensor prepare_linear(const Tensor& w) override;
  Tensor prepare_conv(const Tensor& w, int groups) override;
  Tensor prepare_conv_transpose(const Tensor& w, int groups) override;
  Tensor prepare_vector(const Tensor& w) override;

  void linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) override;
  void conv1d(const Tensor& prev, const Tensor& x, const Tensor& w, const Tensor* bias, int cin, int cout, int kernel,
              int stride, int dilation, int groups, Tensor& y) override;
  void conv_history_update(Tensor& prev, const Tensor& x) override;
  void conv_history_replicate(Tensor& prev, const Tensor& x, const std::vector<uint8_t>& first) override;
  void conv_transpose1d(const Tensor& x, const Tensor& w, const Tensor* bias, int cin, int cout, int kernel, int stride,
                        int groups, Tensor& partial, Tensor& y) override;
  void elu(const Tensor& x, Tensor& y) override;
  void gelu_erf(Tensor& x) override;
  void add(const Tensor& a, const Tensor& b, Tensor& y) override;
  void add_scaled(Tensor& x, const Tensor& u, const Tensor* scale) override;
  void transpose_ct(const Tensor& x, Tensor& y) override;
  void transpose_tc(const Tensor& x, Tensor& y) override;
  void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor& y) override;
  void rope(Tensor& qkv, int heads, int head_dim, float max_period, const std::vector<int64_t>& pos) override;
  void kv_write(KvCache& cache, const Tensor& qkv, int batch, const std::vector<int64_t>& pos) override;
  void attention(const Tensor& qkv, const KvCache& cache, int batch, const std::vector<int64_t>& pos,
                 const std::vector<int64_t>& lo, Tensor& out) override;
  void vq_encode(Tensor& r, const Tensor& codebook, const Tensor& norms, Tensor& codes) override;
  void vq_decode_add(Tensor& acc, const Tensor& codebook, const Tensor& norms, const Tensor& codes) override;

 private:
  ThreadPool pool_;
};

}  // namespace moshi
