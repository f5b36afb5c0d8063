#include "nn/transformer.h"

#include <algorithm>

#include "core/error.h"

namespace moshi {

int TransformerSpec::weight_sets() const {
  if (weights_per_step <= 0) return 1;
  if (schedule.empty()) return weights_per_step;
  return *std::max_element(schedule.begin(), schedule.end()) + 1;
}

int TransformerSpec::gated_hidden() const {
  return dim_feedforward == 4 * d_model ? (21 * d_model) / 8 : (2 * dim_feedforward) / 3;
}

double Transformer::weight_bytes(int set) const {
  if (set < 0) set = 0;
  double b = 0;
  for (const Layer& L : layers_) {
    const Weights& w = L.sets[set];
    b += w.in_proj.nbytes() + w.out_proj.nbytes() + w.ff_in.nbytes() + w.ff_out.nbytes();
  }
  return b;
}

AttnShape Transformer::attn_shape() const {
  return AttnShape{spec_.num_heads, spec_.num_heads / spec_.kv_repeat, spec_.d_model / spec_.num_heads};
}

void Transformer::load_norm(WeightBinder& wb, Backend& be, const std::string& name, Tensor* w, Tensor* b) const {
  const int64_t C = spec_.d_model;
  if (spec_.norm == NormKind::RmsNorm) {
    *w = be.prepare_vector(wb.take(name + ".alpha", {1, 1, C}).reshape({C}));
  } else {
    *w = be.prepare_vector(wb.take(name + ".weight", {C}));
    *b = be.prepare_vector(wb.take(name + ".bias", {C}));
  }
}

void Transformer::load(WeightBinder& wb, Backend& be, const std::string& prefix, const TransformerSpec& spec,
                       const MatrixPolicy& policy) {
  auto matrix = [&](const Tensor& raw) { return be.prepare_linear(apply_policy(raw, policy)); };
  auto take = [&](const std::string& name, const Shape& shape) { return wb.take(name, shape, policy.synth); };
  spec_ = spec;
  const int64_t C = spec.d_model;
  MOSHI_CHECK(spec.num_heads > 0 && C % spec.num_heads == 0 && spec.kv_repeat > 0 &&
                  spec.num_heads % spec.kv_repeat == 0,
              prefix, ": d_model ", C, " does not split into ", spec.num_heads, " heads (kv_repeat ",
              spec.kv_repeat, ")");
  MOSHI_CHECK(spec.gated || spec.weights_per_step == 0, prefix,
              ": weights per step need a gated feed-forward (as in the reference)");
  const AttnShape as = attn_shape();
  const int64_t qkv = as.row(), sets = spec.weight_sets();
  const int64_t hidden = spec.gated ? spec.gated_hidden() : spec.dim_feedforward;
  layers_.clear();
  for (int i = 0; i < spec.num_layers; ++i) {
    const std::string p = prefix + "layers." + std::to_string(i) + ".";
    Layer L;
    load_norm(wb, be, p + "norm1", &L.norm1_w, &L.norm1_b);
    load_norm(wb, be, p + "norm2", &L.norm2_w, &L.norm2_b);
    if (spec.layer_scale) {
      L.scale1 = be.prepare_vector(wb.take(p + "layer_scale_1.scale", {C}));
      L.scale2 = be.prepare_vector(wb.take(p + "layer_scale_2.scale", {C}));
    }
    // Attention projections: one tensor per weight set, or all sets stacked on dim 0.
    const std::string a = p + "self_attn.";
    Tensor in_stacked, out_stacked;
    for (const char* n : {"in_proj_weight", "in_proj.weight"})
      if (wb.has(a + n)) in_stacked = take(a + n, {sets * qkv, C});
    if (wb.has(a + "out_proj.weight")) out_stacked = take(a + "out_proj.weight", {sets * C, C});
    for (int64_t s = 0; s < sets; ++s) {
      Weights w;
      const std::string si = std::to_string(s);
      w.in_proj = matrix(in_stacked.defined() ? in_stacked.slice0(s * qkv, (s + 1) * qkv)
                                              : take(a + "in_projs." + si + ".weight", {qkv, C}));
      w.out_proj = matrix(out_stacked.defined() ? out_stacked.slice0(s * C, (s + 1) * C)
                                                : take(a + "out_projs." + si + ".weight", {C, C}));
      if (spec.gated) {
        const std::string g = spec.weights_per_step > 0 ? p + "gating." + si + "." : p + "gating.";
        w.ff_in = matrix(take(g + "linear_in.weight", {2 * hidden, C}));
        w.ff_out = matrix(take(g + "linear_out.weight", {C, hidden}));
      } else {
        w.ff_in = matrix(take(p + "linear1.weight", {hidden, C}));
        w.ff_out = matrix(take(p + "linear2.weight", {C, hidden}));
      }
      L.sets.push_back(std::move(w));
    }
    layers_.push_back(std::move(L));
  }
}

Transformer::State Transformer::new_state(Backend& be, int batch, int max_steps, int max_positions,
                                          DType kv_dtype) const {
  State st;
  st.batch = batch;
  st.max_steps = max_steps;
  st.offset.assign(batch, 0);
  const AttnShape as = attn_shape();
  // A call of T steps needs the window's context-1 older keys plus its own T.
  const int64_t cap = spec_.context > 0 ? spec_.context + max_steps : std::max(max_steps, max_positions);
  for (size_t i = 0; i < layers_.size(); ++i) {
    st.caches.push_back(be.new_kv_cache(kv_dtype, batch, cap, as.kv_heads, as.head_dim));
  }
  return st;
}

void Transformer::forward(Backend& be, Tensor& x, int T, State& st, int group) const {
  const int B = st.batch;
  const int64_t C = spec_.d_model, N = static_cast<int64_t>(B) * T;
  MOSHI_CHECK(x.numel() == N * C, "transformer: input ", shape_str(x.shape()), " is not [", N, ", ", C, "]");
  MOSHI_CHECK(T <= st.max_steps, "transformer: a call of ", T, " steps exceeds the state's maximum ", st.max_steps);
  const int ctx = spec_.context;
  st.pos.resize(N);
  st.lo.resize(N);
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t) {
      const int64_t p = st.offset[b] + t, r = static_cast<int64_t>(b) * T + t;
      st.pos[r] = p;
      if (ctx > 0) {
        const int64_t group_end = (p / group) * group + group - 1;
        st.lo[r] = std::max<int64_t>({0, p - ctx + 1, group_end - ctx + 1});
      } else {
        st.lo[r] = 0;
      }
    }
  int set = 0;
  if (spec_.weights_per_step > 0) {
    const int64_t step = st.offset[0];
    MOSHI_CHECK(T == 1 && std::all_of(st.offset.begin(), st.offset.end(), [&](int64_t o) { return o == step; }),
                "transformer: weights per step need every stream at the same step, one step per call");
    MOSHI_CHECK(step < spec_.weights_per_step, "transformer: step ", step, " has no weights (",
                spec_.weights_per_step, " steps)");
    set = spec_.schedule.empty() ? static_cast<int>(step) : spec_.schedule[step];
  }
  if (spec_.pos_emb == PosEmb::Sin) be.sin_embedding_add(x, st.pos, spec_.max_period, spec_.positional_scale);
  const AttnShape as = attn_shape();
  const int64_t hidden = spec_.gated ? spec_.gated_hidden() : spec_.dim_feedforward;
  Tensor& h = st.ws.f32(be, 0, {N, C});
  Tensor& qkv = st.ws.f32(be, 1, {N, as.row()});
  Tensor& att = st.ws.f32(be, 2, {N, C});
  Tensor& proj = st.ws.f32(be, 3, {N, C});
  Tensor& ff = st.ws.f32(be, 4, {N, spec_.gated ? 2 * hidden : hidden});
  Tensor& gated = st.ws.f32(be, 5, {N, hidden});
  const bool rope = spec_.pos_emb == PosEmb::Rope || spec_.pos_emb == PosEmb::RopeConcat;
  const bool layer_norm = spec_.norm == NormKind::LayerNorm;
  auto input_norm = [&](const Tensor& w, const Tensor& b) { return InputNorm{layer_norm, &w, &b, spec_.norm_eps}; };
  auto attend = [&](size_t i) {
    be.rope_kv_attention(qkv, st.caches[i], as, rope, spec_.max_period, spec_.pos_emb == PosEmb::Rope, B, st.pos,
                         st.lo, att);
  };
  if (be.folds_norms(N, layer_norm)) {
    // Each half-layer: norm + product, then the product that closes it adds onto x.
    for (size_t i = 0; i < layers_.size(); ++i) {
      const Layer& L = layers_[i];
      const Weights& w = L.sets[set];
      be.norm_linear(x, input_norm(L.norm1_w, L.norm1_b), h, w.in_proj, nullptr, qkv);
      attend(i);
      be.linear_add(att, w.out_proj, nullptr, spec_.layer_scale ? &L.scale1 : nullptr, proj, x);
      const InputNorm n2 = input_norm(L.norm2_w, L.norm2_b);
      if (spec_.gated) {
        be.norm_linear_glu(x, n2, h, w.ff_in, spec_.activation, ff, gated);
        be.linear_add(gated, w.ff_out, nullptr, spec_.layer_scale ? &L.scale2 : nullptr, proj, x);
      } else {
        be.norm_linear_act(x, n2, h, w.ff_in, nullptr, spec_.activation, ff);
        be.linear_add(ff, w.ff_out, nullptr, spec_.layer_scale ? &L.scale2 : nullptr, proj, x);
      }
      if (st.tap) (*st.tap)(st.tap_prefix + "layer" + std::to_string(i), x);
    }
  } else {
    // The residual add that closes each half-layer is fused with the norm that opens the next.
    auto add_norm = [&](const Tensor* scale, const Tensor& nw, const Tensor& nb) {
      if (layer_norm)
        be.add_layer_norm(x, proj, scale, nw, nb, spec_.norm_eps, h);
      else
        be.add_rms_norm(x, proj, scale, nw, spec_.norm_eps, h);
    };
    if (!layers_.empty()) be.apply_norm(x, input_norm(layers_[0].norm1_w, layers_[0].norm1_b), h);
    for (size_t i = 0; i < layers_.size(); ++i) {
      const Layer& L = layers_[i];
      const Weights& w = L.sets[set];
      be.linear(h, w.in_proj, nullptr, qkv);
      attend(i);
      be.linear(att, w.out_proj, nullptr, proj);
      add_norm(spec_.layer_scale ? &L.scale1 : nullptr, L.norm2_w, L.norm2_b);
      if (spec_.gated) {
        be.linear_glu(h, w.ff_in, spec_.activation, ff, gated);
        be.linear(gated, w.ff_out, nullptr, proj);
      } else {
        be.linear_act(h, w.ff_in, nullptr, spec_.activation, ff);
        be.linear(ff, w.ff_out, nullptr, proj);
      }
      const Tensor* scale2 = spec_.layer_scale ? &L.scale2 : nullptr;
      if (i + 1 == layers_.size())
        be.add_scaled(x, proj, scale2);
      else
        add_norm(scale2, layers_[i + 1].norm1_w, layers_[i + 1].norm1_b);
      if (st.tap) (*st.tap)(st.tap_prefix + "layer" + std::to_string(i), x);
    }
  }
  for (int b = 0; b < B; ++b) st.offset[b] += T;
}

}  // namespace moshi
