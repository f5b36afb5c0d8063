// The streaming transformer shared by the codec and the LM: pre-norm layers of self-attention
// over a ring KV cache and a feed-forward block (plain GELU or gated), with the reference's
// options: LayerNorm or RMSNorm, optional LayerScale, RoPE / sinusoidal / no positions,
// grouped key-value heads, and separate weight sets per step (the depformer).
#pragma once
#include <string>
#include <vector>

#include "runtime/backend.h"
#include "runtime/tap.h"
#include "runtime/workspace.h"
#include "weights/weight_source.h"

namespace moshi {

enum class NormKind { LayerNorm, RmsNorm };
enum class PosEmb { None, Rope, RopeConcat, Sin };

struct TransformerSpec {
  int d_model = 0;
  int num_heads = 0;
  int num_layers = 0;
  int dim_feedforward = 0;  // plain FFN: hidden width; gated: the declared size (see gated_hidden)
  int context = 0;          // attention window in steps; 0 = unlimited
  bool layer_scale = false;
  float max_period = 10000.f;
  NormKind norm = NormKind::LayerNorm;
  float norm_eps = 1e-5f;
  bool gated = false;
  Act activation = Act::Gelu;  // of the FFN (gated: applied to the first half)
  PosEmb pos_emb = PosEmb::Rope;
  float positional_scale = 1.f;
  int kv_repeat = 1;
  int weights_per_step = 0;   // 0: one weight set; n: steps 0..n-1 of a stream use their own set
  std::vector<int> schedule;  // step -> weight set (empty: identity)

  int weight_sets() const;
  // The reference's hidden size of a gated FFN: 21·d/8 if declared 4·d, else 2·declared/3.
  int gated_hidden() const;
};

class Transformer {
 public:
  // Binds `prefix`layers.{i}.* under every spelling the released checkpoints use.
  void load(WeightBinder& wb, Backend& be, const std::string& prefix, const TransformerSpec& spec,
            const MatrixPolicy& policy = {});
  const TransformerSpec& spec() const { return spec_; }
  // Bytes of the matrices a step with weight set `set` reads (-1: set 0, all layers).
  double weight_bytes(int set) const;
  int num_layers() const { return static_cast<int>(layers_.size()); }
  // Cached key and value bytes per position over all layers, for a cache of `kv_dtype`.
  double kv_bytes_per_position(DType kv_dtype) const {
    const AttnShape a = attn_shape();
    return static_cast<double>(layers_.size()) * 2 * a.kv_heads * a.head_dim * dtype_size(kv_dtype);
  }

  struct State {
    std::vector<KvCache> caches;  // one per layer
    std::vector<int64_t> offset;  // steps processed per stream since its reset
    int batch = 0;
    int max_steps = 0;            // largest chunk a call may carry
    Workspace ws;
    std::vector<int64_t> pos, lo;  // per-row scratch
    const Tap* tap = nullptr;      // if set, called with "<tap_prefix>layer<i>" after each layer
    std::string tap_prefix;
  };
  // max_positions bounds an unlimited-context stream (its ring then holds that many steps).
  // kv_dtype: F32, or BF16 to halve the cache (keys and values rounded once when written).
  State new_state(Backend& be, int batch, int max_steps, int max_positions = 0, DType kv_dtype = DType::F32) const;
  void reset(State& st, int stream) const { st.offset[stream] = 0; }

  // x [B·T, d_model] in place. `group` is the number of steps one normative streaming call
  // carries: every step of a group sees the keys that call would have kept in a ring of
  // `context` slots (group 1 = the plain sliding window). With weights per step, every stream
  // must be at the same step and T must be 1.
  void forward(Backend& be, Tensor& x, int T, State& st, int group) const;

 private:
  struct Weights {
    Tensor in_proj, out_proj, ff_in, ff_out;  // ff_in: linear1 or gating.linear_in
  };
  struct Layer {
    Tensor norm1_w, norm1_b, norm2_w, norm2_b, scale1, scale2;
    std::vector<Weights> sets;
  };
  void load_norm(WeightBinder& wb, Backend& be, const std::string& name, Tensor* w, Tensor* b) const;
  AttnShape attn_shape() const;

  TransformerSpec spec_;
  std::vector<Layer> layers_;
};

}  // namespace moshi
