// The streaming transformer shared by the codec (and, later, the LM): pre-norm layers of
// self-attention over a ring KV cache and a feed-forward block, with optional LayerScale.
#pragma once
#include <string>
#include <vector>

#include "runtime/backend.h"
#include "runtime/workspace.h"
#include "weights/weight_source.h"

namespace moshi {

struct TransformerSpec {
  int d_model = 0;
  int num_heads = 0;
  int num_layers = 0;
  int dim_feedforward = 0;
  int context = 0;  // attention window in steps; 0 = unlimited
  bool layer_scale = false;
  float max_period = 10000.f;
  float norm_eps = 1e-5f;
};

class Transformer {
 public:
  // Binds `prefix`layers.{i}.* (the reference's names, all spellings of the attention projections).
  void load(WeightBinder& wb, Backend& be, const std::string& prefix, const TransformerSpec& spec);
  const TransformerSpec& spec() const { return spec_; }

  struct State {
    std::vector<KvCache> caches;     // one per layer
    std::vector<int64_t> offset;     // steps processed per stream since its reset
    int batch = 0;
    int max_steps = 0;               // largest chunk a call may carry
    Workspace ws;
    std::vector<int64_t> pos, lo;    // per-row scratch
  };
  State new_state(Backend& be, int batch, int max_steps) const;
  void reset(State& st, int stream) const { st.offset[stream] = 0; }

  // x [B·T, d_model] in place. `group` is the number of steps one normative streaming call
  // carries: every step of a group sees the keys that call would have kept in a ring of
  // `context` slots (group 1 = the plain sliding window).
  void forward(Backend& be, Tensor& x, int T, State& st, int group) const;

 private:
  struct Layer {
    Tensor norm1_w, norm1_b, norm2_w, norm2_b, in_proj, out_proj, linear1, linear2, scale1, scale2;
  };
  TransformerSpec spec_;
  std::vector<Layer> layers_;
};

}  // namespace moshi
