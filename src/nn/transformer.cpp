#include "nn/transformer.h"

#include <algorithm>

#include "core/error.h"

namespace moshi {

void Transformer::load(WeightBinder& wb, Backend& be, const std::string& prefix, const TransformerSpec& spec) {
  spec_ = spec;
  const int64_t C = spec.d_model, F = spec.dim_feedforward;
  layers_.clear();
  for (int i = 0; i < spec.num_layers; ++i) {
    const std::string p = prefix + "layers." + std::to_string(i) + ".";
    Layer L;
    L.norm1_w = be.prepare_vector(wb.take(p + "norm1.weight", {C}));
    L.norm1_b = be.prepare_vector(wb.take(p + "norm1.bias", {C}));
    L.norm2_w = be.prepare_vector(wb.take(p + "norm2.weight", {C}));
    L.norm2_b = be.prepare_vector(wb.take(p + "norm2.bias", {C}));
    L.in_proj = be.prepare_linear(
        wb.take({p + "self_attn.in_projs.0.weight", p + "self_attn.in_proj_weight", p + "self_attn.in_proj.weight"},
                {3 * C, C}));
    L.out_proj =
        be.prepare_linear(wb.take({p + "self_attn.out_projs.0.weight", p + "self_attn.out_proj.weight"}, {C, C}));
    L.linear1 = be.prepare_linear(wb.take(p + "linear1.weight", {F, C}));
    L.linear2 = be.prepare_linear(wb.take(p + "linear2.weight", {C, F}));
    if (spec.layer_scale) {
      L.scale1 = be.prepare_vector(wb.take(p + "layer_scale_1.scale", {C}));
      L.scale2 = be.prepare_vector(wb.take(p + "layer_scale_2.scale", {C}));
    }
    layers_.push_back(std::move(L));
  }
}

Transformer::State Transformer::new_state(Backend& be, int batch, int max_steps) const {
  State st;
  st.batch = batch;
  st.max_steps = max_steps;
  st.offset.assign(batch, 0);
  const int H = spec_.num_heads, D = spec_.d_model / spec_.num_heads;
  // A call of T steps needs the window's context-1 older keys plus its own T.
  const int64_t cap = spec_.context > 0 ? spec_.context + max_steps : max_steps;
  for (size_t i = 0; i < layers_.size(); ++i) {
    KvCache c;
    c.capacity = cap;
    c.k = be.empty(DType::F32, {batch, cap, H, D});
    c.v = be.empty(DType::F32, {batch, cap, H, D});
    st.caches.push_back(std::move(c));
  }
  return st;
}

void Transformer::forward(Backend& be, Tensor& x, int T, State& st, int group) const {
  const int B = st.batch;
  const int64_t C = spec_.d_model, F = spec_.dim_feedforward, N = static_cast<int64_t>(B) * T;
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
  Tensor& h = st.ws.f32(be, 0, {N, C});
  Tensor& qkv = st.ws.f32(be, 1, {N, 3 * C});
  Tensor& att = st.ws.f32(be, 2, {N, C});
  Tensor& proj = st.ws.f32(be, 3, {N, C});
  Tensor& ff = st.ws.f32(be, 4, {N, F});
  const int H = spec_.num_heads, D = static_cast<int>(C / H);
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer& L = layers_[i];
    be.layer_norm(x, L.norm1_w, L.norm1_b, spec_.norm_eps, h);
    be.linear(h, L.in_proj, nullptr, qkv);
    be.rope(qkv, H, D, spec_.max_period, st.pos);
    be.kv_write(st.caches[i], qkv, B, st.pos);
    be.attention(qkv, st.caches[i], B, st.pos, st.lo, att);
    be.linear(att, L.out_proj, nullptr, proj);
    be.add_scaled(x, proj, spec_.layer_scale ? &L.scale1 : nullptr);
    be.layer_norm(x, L.norm2_w, L.norm2_b, spec_.norm_eps, h);
    be.linear(h, L.linear1, nullptr, ff);
    be.gelu_erf(ff);
    be.linear(ff, L.linear2, nullptr, proj);
    be.add_scaled(x, proj, spec_.layer_scale ? &L.scale2 : nullptr);
  }
  for (int b = 0; b < B; ++b) st.offset[b] += T;
}

}  // namespace moshi
