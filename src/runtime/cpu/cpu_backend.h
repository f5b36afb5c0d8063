// The CPU backend: plain f32 implementations of every op (the oracle other backends are tested
// against), with SIMD and threads where they pay.
#pragma once
#include <memory>

#include "core/thread_pool.h"
#include "runtime/backend.h"

namespace moshi {

class CpuBackend : public Backend {
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
  Tensor prepare_embedding(const Tensor& w) override;
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
  void activation(Tensor& x, Act act) override;
  void gated_activation(const Tensor& x, Act act, Tensor& y) override;
  void add(const Tensor& a, const Tensor& b, Tensor& y) override;
  void add_scaled(Tensor& x, const Tensor& u, const Tensor* scale) override;
  void transpose_ct(const Tensor& x, Tensor& y) override;
  void transpose_tc(const Tensor& x, Tensor& y) override;
  void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor& y) override;
  void rms_norm(const Tensor& x, const Tensor& alpha, float eps, Tensor& y) override;
  void embedding(const Tensor& table, const std::vector<int64_t>& ids, Tensor& out, bool accumulate) override;
  void sin_embedding_add(Tensor& x, const std::vector<int64_t>& pos, float max_period, float scale) override;
  void rope(Tensor& qkv, const AttnShape& s, float max_period, bool interleaved,
            const std::vector<int64_t>& pos) override;
  void kv_write(KvCache& cache, const Tensor& qkv, const AttnShape& s, int batch,
                const std::vector<int64_t>& pos) override;
  void attention(const Tensor& qkv, const KvCache& cache, const AttnShape& s, int batch,
                 const std::vector<int64_t>& pos, const std::vector<int64_t>& lo, Tensor& out) override;
  void vq_encode(Tensor& r, const Tensor& codebook, const Tensor& norms, Tensor& codes, int64_t col) override;
  void vq_decode_add(Tensor& acc, const Tensor& codebook, const Tensor& norms, const Tensor& codes,
                     int64_t col) override;
  void embedding_from(const Tensor& table, const Tensor& ids, int64_t col, Tensor& out, bool accumulate) override;
  void sample(const Tensor& logits, const SamplingParams& p, uint64_t seed, const std::vector<int64_t>& steps,
              uint64_t site, Tensor& tokens, int64_t col) override;

 private:
  ThreadPool pool_;
};

}  // namespace moshi
