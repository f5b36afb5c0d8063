// The op interface the models are written against. A model calls only these ops on tensors
// the backend allocated; CPU and CUDA differ only below this line. Shapes in comments are
// [dims] row-major; "host" arrays (positions, masks) are plain CPU memory.
#pragma once
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"
#include "runtime/sampling.h"

namespace moshi {

// A streaming attention cache: a ring of `capacity` slots per stream; position p lives in slot
// p % capacity. `k`/`v` hold B·capacity·H·D values in the layout of the backend that made them
// (Backend::new_kv_cache): [B, capacity, H, D] by default, [B, H, capacity, D] on CUDA (each
// head's keys contiguous, which long windows stream faster). Only the cache ops read them.
struct KvCache {
  Tensor k, v;
  int64_t capacity = 0;
};

// Head layout of a fused q|k|v row: `heads` query heads and `kv_heads` key/value heads (query
// head h reads kv head h / (heads / kv_heads)), each `head_dim` wide.
struct AttnShape {
  int heads = 0, kv_heads = 0, head_dim = 0;
  int64_t row() const { return static_cast<int64_t>(heads + 2 * kv_heads) * head_dim; }
};

enum class Act { Identity, Gelu, Silu, Relu, Sigmoid, Tanh, Elu };

// The norm in front of a product (Backend::norm_linear and its kin), over the last dimension:
// RMSNorm with alpha `w`, or LayerNorm (`layer`) with weight `w` and bias `b`.
struct InputNorm {
  bool layer = false;
  const Tensor* w = nullptr;
  const Tensor* b = nullptr;
  float eps = 0.f;
};
// "gelu" (exact erf), "silu", "relu", "sigmoid", "tanh", "elu", "identity"; false if unknown.
bool act_from_name(const std::string& name, Act* out);

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
  // Linear weight [out, in], f32 or bf16 (kept as stored: bf16 is widened inside the kernels).
  virtual Tensor prepare_linear(const Tensor& w) = 0;
  // Embedding table [V, D], f32 or bf16, read a row at a time.
  virtual Tensor prepare_embedding(const Tensor& w) = 0;
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
  virtual void activation(Tensor& x, Act act) = 0;                 // in place (gelu: exact erf form)
  // y [N, H] = act(x[:, :H]) ⊙ x[:, H:] for x [N, 2H] (the gated FFN's first half is activated).
  virtual void gated_activation(const Tensor& x, Act act, Tensor& y) = 0;
  virtual void add(const Tensor& a, const Tensor& b, Tensor& y) = 0;
  // x += scale ⊙ u, scale [C] over the last dimension (nullptr: plain add).
  virtual void add_scaled(Tensor& x, const Tensor& u, const Tensor* scale) = 0;
  // [B, C, T] <-> [B, T, C]
  virtual void transpose_ct(const Tensor& x, Tensor& y) = 0;
  virtual void transpose_tc(const Tensor& x, Tensor& y) = 0;
  // Over the last dimension of x [N, C], statistics in f32.
  virtual void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor& y) = 0;
  // y = x · alpha / sqrt(mean(x²) + eps), alpha [C].
  virtual void rms_norm(const Tensor& x, const Tensor& alpha, float eps, Tensor& y) = 0;
  // out [N, D] (+)= table[ids[n]]: id -1 gives zeros, other negative ids read row 0 (as the
  // reference does); ids >= V fail. `accumulate` adds onto out instead of overwriting it.
  virtual void embedding(const Tensor& table, const std::vector<int64_t>& ids, Tensor& out, bool accumulate) = 0;
  // x [N, C] += scale · [cos(p·f_i) | sin(p·f_i)], f_i = max_period^(-i / (C/2 - 1)), p = pos[n].
  virtual void sin_embedding_add(Tensor& x, const std::vector<int64_t>& pos, float max_period, float scale) = 0;

  // qkv [B·T, shape.row()] (q | k | v, head-major): RoPE on q and k in place at the given
  // absolute positions (host, B·T entries); `interleaved` pairs (2i, 2i+1), else (i, i + D/2).
  virtual void rope(Tensor& qkv, const AttnShape& s, float max_period, bool interleaved,
                    const std::vector<int64_t>& pos) = 0;
  // A zeroed cache for `batch` streams of `capacity` slots of kv_heads x head_dim values.
  virtual KvCache new_kv_cache(DType dtype, int batch, int64_t capacity, int kv_heads, int head_dim) {
    return KvCache{empty(dtype, {batch, capacity, kv_heads, head_dim}), empty(dtype, {batch, capacity, kv_heads, head_dim}),
                   capacity};
  }
  // Writes k and v of qkv into the cache at slots pos % capacity.
  virtual void kv_write(KvCache& cache, const Tensor& qkv, const AttnShape& s, int batch,
                        const std::vector<int64_t>& pos) = 0;
  // out [B·T, heads·D]: query (b, t) at position pos attends to cached positions [lo, pos].
  virtual void attention(const Tensor& qkv, const KvCache& cache, const AttnShape& s, int batch,
                         const std::vector<int64_t>& pos, const std::vector<int64_t>& lo, Tensor& out) = 0;

  // ---- fused forms: one op where a backend has a kernel for it, else the ops it stands for ----
  // rope (if `with_rope`) then kv_write.
  virtual void rope_kv_write(Tensor& qkv, KvCache& cache, const AttnShape& s, bool with_rope, float max_period,
                             bool interleaved, int batch, const std::vector<int64_t>& pos) {
    if (with_rope) rope(qkv, s, max_period, interleaved, pos);
    kv_write(cache, qkv, s, batch, pos);
  }
  // rope_kv_write(...) then attention(...) over the same rows (a decoding step's attention).
  // qkv is left as scratch afterwards: a fused kernel need not rotate it in place.
  virtual void rope_kv_attention(Tensor& qkv, KvCache& cache, const AttnShape& s, bool with_rope, float max_period,
                                 bool interleaved, int batch, const std::vector<int64_t>& pos,
                                 const std::vector<int64_t>& lo, Tensor& out) {
    rope_kv_write(qkv, cache, s, with_rope, max_period, interleaved, batch, pos);
    attention(qkv, cache, s, batch, pos, lo, out);
  }
  // add_scaled(x, u, scale) then rms_norm(x, alpha, eps, y) (the residual add and the next norm).
  virtual void add_rms_norm(Tensor& x, const Tensor& u, const Tensor* scale, const Tensor& alpha, float eps,
                            Tensor& y) {
    add_scaled(x, u, scale);
    rms_norm(x, alpha, eps, y);
  }
  // linear(x, w, bias, y) then activation(y, act).
  virtual void linear_act(const Tensor& x, const Tensor& w, const Tensor* bias, Act act, Tensor& y) {
    linear(x, w, bias, y);
    activation(y, act);
  }
  // linear(x, w, no bias, t) then gated_activation(t, act, y): the first product of a gated
  // feed-forward, w [2H, in] (gate rows, then up rows), y [N, H]. `t` [N, 2H] is scratch that a
  // fused kernel leaves untouched.
  virtual void linear_glu(const Tensor& x, const Tensor& w, Act act, Tensor& t, Tensor& y) {
    linear(x, w, nullptr, t);
    gated_activation(t, act, y);
  }
  // embedding(*tables[s], ids[s·N, (s+1)·N), out, s > 0) for each table in turn (N = ids over
  // tables): the sum of one step's token embeddings, in that order.
  virtual void embedding_sum(const std::vector<const Tensor*>& tables, const std::vector<int64_t>& ids,
                             Tensor& out) {
    const size_t S = tables.size(), N = S ? ids.size() / S : 0;
    std::vector<int64_t> part(N);
    for (size_t k = 0; k < S; ++k) {
      std::copy(ids.begin() + static_cast<std::ptrdiff_t>(k * N), ids.begin() + static_cast<std::ptrdiff_t>((k + 1) * N),
                part.begin());
      embedding(*tables[k], part, out, k > 0);
    }
  }
  // One streaming conv step over act(x) (x itself for Identity; Elu as elu()): conv1d(prev,
  // act(x), ..., y) then conv_history_update(prev, act(x)). `scratch` [B, Cin, T] holds act(x)
  // where the backend composes the ops.
  virtual void conv1d_step(Tensor& prev, const Tensor& x, Act act, const Tensor& w, const Tensor* bias, int cin,
                           int cout, int kernel, int stride, int dilation, int groups, Tensor& scratch, Tensor& y) {
    const Tensor* in = &x;
    if (act != Act::Identity) {
      if (act == Act::Elu) {
        elu(x, scratch);
      } else {
        copy(scratch, x);
        activation(scratch, act);
      }
      in = &scratch;
    }
    conv1d(prev, *in, w, bias, cin, cout, kernel, stride, dilation, groups, y);
    conv_history_update(prev, *in);
  }
  // y += the conv1d_step over act(x) (a residual branch's last conv added onto the stream):
  // conv1d_step(..., scratch, tmp) then add_scaled(y, tmp). `tmp` is [B, Cout, Tout].
  virtual void conv1d_step_add(Tensor& prev, const Tensor& x, Act act, const Tensor& w, const Tensor* bias, int cin,
                               int cout, int kernel, int stride, int dilation, int groups, Tensor& scratch, Tensor& tmp,
                               Tensor& y) {
    conv1d_step(prev, x, act, w, bias, cin, cout, kernel, stride, dilation, groups, scratch, tmp);
    add_scaled(y, tmp, nullptr);
  }
  // Whether a transformer's half-layers over `rows` rows should run as norm_linear* ... linear_add
  // (the backend folds the norm into the product after it and the residual add into the product
  // before it) rather than linear ... add_rms_norm / add_layer_norm (one kernel for the add and
  // the next norm). The results are the same either way (up to the order of sums).
  virtual bool folds_norms(int64_t /*rows*/, bool /*layer_norm*/) const { return false; }
  // The norm and the product of a transformer's half-layer: h = norm(x) (rms_norm or
  // layer_norm), then linear(h, w, bias, y) / linear_act(h, ..., act, y) / linear_glu(h, w, act,
  // t, y). `h` [N, in] (and `t`) are scratch that a fused kernel leaves untouched.
  virtual void norm_linear(const Tensor& x, const InputNorm& n, Tensor& h, const Tensor& w, const Tensor* bias,
                           Tensor& y) {
    apply_norm(x, n, h);
    linear(h, w, bias, y);
  }
  virtual void norm_linear_act(const Tensor& x, const InputNorm& n, Tensor& h, const Tensor& w, const Tensor* bias,
                               Act act, Tensor& y) {
    apply_norm(x, n, h);
    linear_act(h, w, bias, act, y);
  }
  virtual void norm_linear_glu(const Tensor& x, const InputNorm& n, Tensor& h, const Tensor& w, Act act, Tensor& t,
                               Tensor& y) {
    apply_norm(x, n, h);
    linear_glu(h, w, act, t, y);
  }
  // The product that closes a residual branch: x += scale ⊙ linear(a, w, bias), as linear(a, w,
  // bias, t) then add_scaled(x, t, scale). `t` [N, out] is scratch that a fused kernel leaves
  // untouched.
  virtual void linear_add(const Tensor& a, const Tensor& w, const Tensor* bias, const Tensor* scale, Tensor& t,
                          Tensor& x) {
    linear(a, w, bias, t);
    add_scaled(x, t, scale);
  }
  // add_scaled(x, u, scale) then layer_norm(x, w, b, eps, y).
  virtual void add_layer_norm(Tensor& x, const Tensor& u, const Tensor* scale, const Tensor& w, const Tensor& b,
                              float eps, Tensor& y) {
    add_scaled(x, u, scale);
    layer_norm(x, w, b, eps, y);
  }

  // Vector quantisation over rows of r [N, D] with a codebook [bins, D] prepared by
  // prepare_linear and its squared norms [bins]: codes[n, col] (i64 [N] or [N, S]) <- nearest
  // entry (ties: lowest index), then r -= codebook[code].
  virtual void vq_encode(Tensor& r, const Tensor& codebook, const Tensor& norms, Tensor& codes, int64_t col) = 0;
  // acc[N, D] += codebook[codes[n, col]] (codes [N] or [N, S], checked against [0, bins)
  // where the backend can: the CUDA backend checks them outside recorded stages).
  virtual void vq_decode_add(Tensor& acc, const Tensor& codebook, const Tensor& norms, const Tensor& codes,
                             int64_t col) = 0;

  // ---- tokens that stay on the device -----------------------------------------------------
  // As embedding, with the ids read from column `col` of an i64 tensor [N, S] this backend
  // made (tokens drawn by `sample`), so that no step waits for the host. Ids are not checked
  // here (they are, by the caller, once downloaded); an id >= V reads row V-1, never past it.
  virtual void embedding_from(const Tensor& table, const Tensor& ids, int64_t col, Tensor& out, bool accumulate) = 0;
  // tokens[b, col] (i64 [B, S]) <- one token per row b of logits [B, V], as sample_token(row b,
  // V, p, seed, stream b, steps[b], site) on the host (greedy: ties to the lowest index).
  virtual void sample(const Tensor& logits, const SamplingParams& p, uint64_t seed, const std::vector<int64_t>& steps,
                      uint64_t site, Tensor& tokens, int64_t col) = 0;

  // h = the norm n of x (rms_norm or layer_norm).
  void apply_norm(const Tensor& x, const InputNorm& n, Tensor& h) {
    if (n.layer)
      layer_norm(x, *n.w, *n.b, n.eps, h);
    else
      rms_norm(x, *n.w, n.eps, h);
  }

  // ---- repeated op sequences ---------------------------------------------------------------
  // A stage is a sequence of ops that repeats identically (same ops, shapes, tensors and launch
  // shapes; only the values of host arrays such as positions and ids change), e.g. one LM step.
  // A backend may record it once and replay the recording afterwards (CUDA graphs): the ops
  // between stage_begin and stage_end must then not read results back to the host. Backends
  // without recordings run the ops as they come. Ids come from stage_create, are released by
  // stage_destroy, and belong to one sequence of ops on one set of tensors.
  virtual int stage_create() { return 0; }
  virtual void stage_destroy(int /*id*/) {}
  virtual void stage_begin(int /*id*/) {}
  virtual void stage_end(int /*id*/) {}
  // Leaves a stage begun but not ended (an error interrupted it): nothing of the run is kept and
  // the stage runs its ops as they come from then on.
  virtual void stage_abort(int /*id*/) {}

  // ---- timing --------------------------------------------------------------------------------
  // Waits until every op queued so far has finished (ops of asynchronous backends).
  virtual void synchronize() {}
  // Marks the point that the ops queued so far reach (slot 0 to kMarks - 1, outside stages);
  // marks_ms(a, b) is the time the device took from mark a to mark b, asked once both were
  // reached (after synchronize or a download). Timing a part of a sequence this way does not
  // stop the host from queueing what follows. Backends whose ops run as they are called mark
  // the host's clock.
  static constexpr int kMarks = 4;
  virtual void mark(int slot) { host_marks_[mark_slot(slot)] = std::chrono::steady_clock::now(); }
  virtual double marks_ms(int a, int b) {
    return std::chrono::duration<double, std::milli>(host_marks_[mark_slot(b)] - host_marks_[mark_slot(a)]).count();
  }
  static size_t mark_slot(int slot) {
    MOSHI_CHECK(slot >= 0 && slot < kMarks, "mark: slot ", slot, " is out of range [0, ", kMarks, ")");
    return static_cast<size_t>(slot);
  }
  // The device memory's read bandwidth in GB/s, measured now; 0 where the backend has no
  // memory of its own (the CPU's is measured by moshi::measure_read_bandwidth_gbps).
  virtual double measure_read_bandwidth_gbps() { return 0; }

 private:
  std::array<std::chrono::steady_clock::time_point, kMarks> host_marks_{};
};

struct BackendOptions {
  std::string device = "cpu";
  int threads = 0;  // 0: all cores
};

std::shared_ptr<Backend> make_backend(const BackendOptions& opts);

// Owns a stage id of a backend (see Backend::stage_create) for the lifetime of the tensors its
// ops use; movable, not copyable.
class StageHandle {
 public:
  StageHandle() = default;
  explicit StageHandle(Backend& be) : be_(&be), id_(be.stage_create()) {}
  StageHandle(StageHandle&& o) noexcept : be_(o.be_), id_(o.id_) { o.be_ = nullptr; }
  StageHandle& operator=(StageHandle&& o) noexcept {
    if (this != &o) {
      release();
      be_ = o.be_;
      id_ = o.id_;
      o.be_ = nullptr;
    }
    return *this;
  }
  StageHandle(const StageHandle&) = delete;
  StageHandle& operator=(const StageHandle&) = delete;
  ~StageHandle() { release(); }
  // Runs the stage for the lifetime of the returned scope: finish() ends it; a scope left
  // without finish() (an exception) aborts it, so the backend is never left mid-recording.
  class Scope {
   public:
    Scope(const StageHandle* h, bool on) : h_(on && h->be_ ? h : nullptr) {
      if (h_) h_->be_->stage_begin(h_->id_);
    }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
    ~Scope() {
      if (h_) h_->be_->stage_abort(h_->id_);
    }
    void finish() {
      const StageHandle* h = h_;
      h_ = nullptr;
      if (h) h->be_->stage_end(h->id_);
    }

   private:
    const StageHandle* h_;
  };
  // `on` false: the ops between run as they come (e.g. while a tap reads intermediate results).
  Scope run(bool on = true) const { return Scope(this, on); }

 private:
  void release() {
    if (be_) be_->stage_destroy(id_);
    be_ = nullptr;
  }
  Backend* be_ = nullptr;
  int id_ = 0;
};

}  // namespace moshi
