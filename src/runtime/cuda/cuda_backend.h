// The CUDA backend: every op of backend.h on one GPU, in stream order on a stream the backend
// owns. Tensors it makes live in device memory (Device::CUDA); host arrays passed to ops
// (positions, ids, masks) are copied to device scratch that the backend owns and reuses.
// Ops are asynchronous (download and synchronize wait); one backend is used by one thread at a
// time, as its scratch is shared by its ops. This header includes no CUDA header (the rest of
// the project is plain C++): the CUDA state sits behind an opaque Impl defined in common.cuh.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "runtime/backend.h"

namespace moshi {

namespace cuda {
struct Impl;
}

class CudaBackend final : public Backend {
 public:
  // Opens CUDA device `device_index`. Throws moshi::Error "no CUDA device available (...)" when
  // the machine has none (or no usable driver), and a one-line error for a bad index.
  explicit CudaBackend(int device_index = 0);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  std::string name() const override;  // "cuda:N (device name)"
  Device device() const override { return Device::CUDA; }
  // Blocks until every op queued so far has finished (and reports any error it raised).
  void synchronize() override;
  void mark(int slot) override;
  double marks_ms(int a, int b) override;
  double measure_read_bandwidth_gbps() override;
  int stage_create() override;
  void stage_destroy(int id) override;
  void stage_begin(int id) override;
  void stage_end(int id) override;
  void stage_abort(int id) override;

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
  void conv1d_step(Tensor& prev, const Tensor& x, Act act, const Tensor& w, const Tensor* bias, int cin, int cout,
                   int kernel, int stride, int dilation, int groups, Tensor& scratch, Tensor& y) override;
  void conv1d_step_add(Tensor& prev, const Tensor& x, Act act, const Tensor& w, const Tensor* bias, int cin, int cout,
                       int kernel, int stride, int dilation, int groups, Tensor& scratch, Tensor& tmp,
                       Tensor& y) override;
  void conv_history_update(Tensor& prev, const Tensor& x) override;
  void conv_history_replicate(Tensor& prev, const Tensor& x, const std::vector<uint8_t>& first) override;
  void conv_transpose1d(const Tensor& x, const Tensor& w, const Tensor* bias, int cin, int cout, int kernel, int stride,
                        int groups, Tensor& partial, Tensor& y) override;
  void elu(const Tensor& x, Tensor& y) override;
  void activation(Tensor& x, Act act) override;
  void gated_activation(const Tensor& x, Act act, Tensor& y) override;
  void linear_glu(const Tensor& x, const Tensor& w, Act act, Tensor& t, Tensor& y) override;
  void linear_act(const Tensor& x, const Tensor& w, const Tensor* bias, Act act, Tensor& y) override;
  // RMSNorm at up to 8 rows (the LM's decoding step up to batch 8).
  bool folds_norms(int64_t rows, bool layer_norm) const override;
  void norm_linear(const Tensor& x, const InputNorm& n, Tensor& h, const Tensor& w, const Tensor* bias,
                   Tensor& y) override;
  void norm_linear_glu(const Tensor& x, const InputNorm& n, Tensor& h, const Tensor& w, Act act, Tensor& t,
                       Tensor& y) override;
  void linear_add(const Tensor& a, const Tensor& w, const Tensor* bias, const Tensor* scale, Tensor& t,
                  Tensor& x) override;
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
  // [B, H, capacity, D]: each head's ring contiguous.
  KvCache new_kv_cache(DType dtype, int batch, int64_t capacity, int kv_heads, int head_dim) override;
  void kv_write(KvCache& cache, const Tensor& qkv, const AttnShape& s, int batch,
                const std::vector<int64_t>& pos) override;
  void rope_kv_write(Tensor& qkv, KvCache& cache, const AttnShape& s, bool with_rope, float max_period,
                     bool interleaved, int batch, const std::vector<int64_t>& pos) override;
  void add_rms_norm(Tensor& x, const Tensor& u, const Tensor* scale, const Tensor& alpha, float eps,
                    Tensor& y) override;
  void add_layer_norm(Tensor& x, const Tensor& u, const Tensor* scale, const Tensor& w, const Tensor& b, float eps,
                      Tensor& y) override;
  void rope_kv_attention(Tensor& qkv, KvCache& cache, const AttnShape& s, bool with_rope, float max_period,
                         bool interleaved, int batch, const std::vector<int64_t>& pos, const std::vector<int64_t>& lo,
                         Tensor& out) override;
  void attention(const Tensor& qkv, const KvCache& cache, const AttnShape& s, int batch,
                 const std::vector<int64_t>& pos, const std::vector<int64_t>& lo, Tensor& out) override;
  void vq_encode(Tensor& r, const Tensor& codebook, const Tensor& norms, Tensor& codes, int64_t col) override;
  void vq_decode_add(Tensor& acc, const Tensor& codebook, const Tensor& norms, const Tensor& codes,
                     int64_t col) override;
  void embedding_sum(const std::vector<const Tensor*>& tables, const std::vector<int64_t>& ids,
                     Tensor& out) override;
  void embedding_from(const Tensor& table, const Tensor& ids, int64_t col, Tensor& out, bool accumulate) override;
  void sample(const Tensor& logits, const SamplingParams& p, uint64_t seed, const std::vector<int64_t>& steps,
              uint64_t site, Tensor& tokens, int64_t col) override;

 private:
  std::unique_ptr<cuda::Impl> impl_;
};

}  // namespace moshi
