// The op interface the models are written against. A model calls only these ops on tensors
// the backend allocated; CPU and CUDA differ only below this line. Shapes in comments are
// [dims] row-major; "host" arrays (positions, masks) are plain CPU memory.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace moshi {

// A streaming attention cache: a ring of `capacity` slots per stream; position p lives in slot
// p % capacity. `k`/`v` are [B, capacity, H, D].
struct KvCache {
  Tensor k, v;
  int64_t capacity = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual Device device() const = 0;
  virtual int threads() const { return 1; }

  // ---- memory -------------------------------------------------------------------------------
  virtual Tensor empty(DType dtype, const Shape& shape) = 0;  // zero-filled
  virtual void zero(Tensor& t) = 0;
  virtual void upload(Tensor& dst, const void* host) = 0;      // host -> device, dst.nbytes()
  virtual void download(const Tensor& src, void* host) = 0;    // device -> host
  virtual void copy(Tensor& dst, const Tensor& src) = 0;       // same size, device -> device

  // ---- weights: converted once at load into whatever layout the kernels want ---------------
  // Linear weight [out, in].
  virtual Tensor prepare_linear(const Tensor& w) = 0;
  // Conv1d weight [Cout, Cin/groups, K].
  virtual Tensor prepare_conv(const Tensor& w, int groups) = 0;
  // ConvTranspose1d weight [Cin, Cout/groups, K].
  virtual Tensor prepare_conv_transpose(const Tensor& w, int groups) = 0;
  // Plain f32 vector or table (norm weights, biases, scales, codebooks).
  virtual Tensor prepare_vector(const Tensor& w) = 0;

  // ---- ops -----------------------------------------------------------------------------------
  // y[N, out] = x[N, in] · wᵀ (+ bias[out]).
  virtual void linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) = 0;

  // Causal conv over the time concatenation of `prev` [B, Cin, P] and `x` [B, Cin, T] with no
  // padding: y [B, Cout, T/stride]. Requires P = (K-1)·dilation + 1 - stride.
  virtual void conv1d(const Tensor& prev, const Tensor& x, const Tensor& w, const Tensor* bias, int cin, int cout,
                      int kernel, int stride, int dilation, int groups, Tensor& y) = 0;
  // prev [B, C, P] <- the last P frames of concat(prev, x [B, C, T]).
  virtual void conv_history_update(Tensor& prev, const Tensor& x) = 0;
  // For each stream b with first[b] != 0: prev[b, c, :] <- x[b, c, 0] (replicate padding).
  virtual void conv_history_replicate(Tensor& prev, const Tensor& x, const std::vector<uint8_t>& first) = 0;

  // Streaming transposed conv: x [B, Cin, T] -> y [B, Cout, T·stride]. `partial` [B, Cout, K-stride]
  // holds the overlap (without bias) carried to the next call and is updated.
  virtual void conv_transpose1d(const Tensor& x, const Tensor& w, const Tensor* bias, int cin, int cout, int kernel,
                                int stride, int groups, Tensor& partial, Tensor& y) = 0;

  virtual void elu(const Tensor& x, Tensor& y) = 0;               // alpha 1, via expm1
  virtual void gelu_erf(Tensor& x) = 0;                            // in place, exact erf form
  virtual void add(const Tensor& a, const Tensor& b, Tensor& y) = 0;
  // x += scale ⊙ u, scale [C] over the last dimension (nullptr: plain add).
  virtual void add_scaled(Tensor& x, const Tensor& u, const Tensor* scale) = 0;
  // [B, C, T] <-> [B, T, C]
  virtual void transpose_ct(const Tensor& x, Tensor& y) = 0;
  virtual void transpose_tc(const Tensor& x, Tensor& y) = 0;
  // Over the last dimension of x [N, C].
  virtual void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor& y) = 0;

  // qkv [B·T, 3·H·D] (q | k | v, head-major): interleaved RoPE on q and k in place at the given
  // absolute positions (host, B·T entries).
  virtual void rope(Tensor& qkv, int heads, int head_dim, float max_period, const std::vector<int64_t>& pos) = 0;
  // Writes k and v of qkv [B·T, 3·H·D] into the cache at slots pos % capacity.
  virtual void kv_write(KvCache& cache, const Tensor& qkv, int batch, const std::vector<int64_t>& pos) = 0;
  // out [B·T, H·D]: query (b, t) at position pos attends to cached positions [lo, pos].
  virtual void attention(const Tensor& qkv, const KvCache& cache, int batch, const std::vector<int64_t>& pos,
                         const std::vector<int64_t>& lo, Tensor& out) = 0;

  // Vector quantisation over rows of r [N, D] with a codebook [bins, D] prepared by
  // prepare_linear and its squared norms [bins]: codes[N] (i64) <- nearest entry (ties: lowest
  // index), then r -= codebook[code].
  virtual void vq_encode(Tensor& r, const Tensor& codebook, const Tensor& norms, Tensor& codes) = 0;
  // acc[N, D] += codebook[codes[n]] (codes checked against [0, bins)).
  virtual void vq_decode_add(Tensor& acc, const Tensor& codebook, const Tensor& norms, const Tensor& codes) = 0;
};

struct BackendOptions {
  std::string device = "cpu";
  int threads = 0;  // 0: all cores
};

std::shared_ptr<Backend> make_backend(const BackendOptions& opts);

}  // namespace moshi
