#include "lm/lm_config.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "weights/json_reader.h"

namespace moshi {

using json = nlohmann::json;

int LmConfig::max_delay() const { return delays.empty() ? 0 : *std::max_element(delays.begin(), delays.end()); }

int LmConfig::depformer_in_count() const {
  if (!depformer_multi_linear) return 1;
  return depformer.schedule.empty() ? dep_q : *std::max_element(depformer.schedule.begin(), depformer.schedule.end()) + 1;
}

int LmConfig::depformer_in_index(int k) const {
  if (!depformer_multi_linear) return 0;
  return depformer.schedule.empty() ? k : depformer.schedule[k];
}

namespace {


void set_norm(const std::string& name, const std::string& what, NormKind* kind, float* eps) {
  if (name == "layer_norm") { *kind = NormKind::LayerNorm; *eps = 1e-5f; }
  else if (name == "layer_norm_f32") { *kind = NormKind::LayerNorm; *eps = 1e-8f; }
  else if (name == "rms_norm") { *kind = NormKind::RmsNorm; *eps = 1e-5f; }
  else if (name == "rms_norm_f32") { *kind = NormKind::RmsNorm; *eps = 1e-8f; }
  else fail(what, ": norm '", name, "' is not supported (layer_norm, layer_norm_f32, rms_norm, rms_norm_f32)");
}

PosEmb pos_emb(const std::string& name, const std::string& what) {
  if (name == "none") return PosEmb::None;
  if (name == "rope") return PosEmb::Rope;
  if (name == "rope_concat") return PosEmb::RopeConcat;
  if (name == "sin") return PosEmb::Sin;
  fail(what, ": positional embedding '", name, "' is not supported (none, rope, rope_concat, sin)");
}

void set_gating(const std::string& name, const std::string& what, TransformerSpec* t) {
  if (name == "none") {
    t->gated = false;
    t->activation = Act::Gelu;  // the reference's plain FFN uses exact GELU
    return;
  }
  t->gated = true;
  MOSHI_CHECK(act_from_name(name, &t->activation), what, ": gating '", name, "' is not supported");
}

}  // namespace

LmConfig parse_lm_config(const std::string& text, const std::string& what) {
  json root = json::parse(text, nullptr, false);
  MOSHI_CHECK(!root.is_discarded() && root.is_object(), what, ": not a JSON object");
  const json& j = root.contains("lm_config") && root["lm_config"].is_object() ? root["lm_config"] : root;
  JsonReader r{j, what + ": "};
  for (const char* k : {"cross_attention", "demux_second_stream", "demux_second_text_stream", "norm_emb", "quantize",
                        "lora"})
    MOSHI_CHECK(!r.get_bool(k, false), what, ": '", k, "' models are not supported by moshi-rt yet");
  MOSHI_CHECK(!r.has("conditioners") || j["conditioners"].empty(), what,
              ": conditioned models (conditioners) are not supported by moshi-rt yet");
  MOSHI_CHECK(r.get_bool("causal", true), what, ": causal = false is not supported");

  LmConfig c;
  c.source = what;
  c.dim = r.get_int("dim", 128, 1);
  c.text_card = r.get_int("text_card", 32000, 1);
  c.text_card_out = r.get_int("text_card_out", c.text_card, 1);
  c.existing_text_padding_id = r.get_int("existing_text_padding_id", 3);
  c.existing_text_end_padding_id = r.get_int("existing_text_end_padding_id", 0);
  c.n_q = r.get_int("n_q", 8, 0, 256);
  c.dep_q = r.get_int("dep_q", 8, 0, 256);
  MOSHI_CHECK(c.dep_q <= c.n_q, what, ": dep_q ", c.dep_q, " exceeds n_q ", c.n_q);
  c.card = r.get_int("card", 1024, 1);
  c.delays = r.get_ints("delays");
  if (!r.has("delays")) c.delays.assign(c.num_codebooks(), 0);
  MOSHI_CHECK(static_cast<int>(c.delays.size()) == c.num_codebooks(), what, ": ", c.delays.size(),
              " delays for ", c.num_codebooks(), " streams (text + n_q)");
  c.bias_proj = r.get_bool("bias_proj", false);
  c.extra_heads_num_heads = r.get_int("extra_heads_num_heads", 0);
  c.extra_heads_dim = r.get_int("extra_heads_dim", 6, 1);
  const double hidden_scale = r.get_num("hidden_scale", 4.0);
  const std::string norm = r.get_str("norm", "layer_norm");

  // Temporal transformer: LMModel passes its own arguments, the rest come from kwargs.
  TransformerSpec& t = c.temporal;
  t.d_model = c.dim;
  t.num_heads = r.get_int("num_heads", 8, 1);
  t.num_layers = r.get_int("num_layers", 1, 0, 1024);
  t.dim_feedforward = static_cast<int>(hidden_scale * c.dim);
  t.context = r.has("context") ? r.get_int("context", 0, 1) : 0;
  t.layer_scale = r.has("layer_scale");
  t.max_period = static_cast<float>(r.get_num("max_period", 10000.0));
  set_norm(norm, what, &t.norm, &t.norm_eps);
  set_gating(r.get_str("gating", "none"), what, &t);
  t.pos_emb = pos_emb(r.get_str("positional_embedding", "sin"), what);
  t.positional_scale = static_cast<float>(r.get_num("positional_scale", 1.0));
  t.kv_repeat = r.get_int("kv_repeat", 1, 1);
  c.out_norm = t.norm;
  c.out_norm_eps = t.norm_eps;

  // Depformer: inherits every kwarg it is not given with the depformer_ prefix.
  TransformerSpec& d = c.depformer;
  c.depformer_dim = r.get_int("depformer_dim", 256, 1);
  d.d_model = c.depformer_dim;
  d.num_heads = r.get_int("depformer_num_heads", t.num_heads, 1);
  d.num_layers = r.get_int("depformer_num_layers", t.num_layers, 0, 1024);
  d.dim_feedforward = r.has("depformer_dim_feedforward") ? r.get_int("depformer_dim_feedforward", 0, 1)
                                                          : static_cast<int>(hidden_scale * c.depformer_dim);
  d.context = 0;  // forced to None by the reference
  d.layer_scale = j.contains("depformer_layer_scale") ? r.has("depformer_layer_scale") : t.layer_scale;
  d.max_period = static_cast<float>(r.get_num("depformer_max_period", t.max_period));
  d.norm = t.norm;
  d.norm_eps = t.norm_eps;
  d.gated = t.gated;
  d.activation = t.activation;
  if (r.has("depformer_gating")) set_gating(r.get_str("depformer_gating", "none"), what, &d);
  d.pos_emb = pos_emb(r.get_str("depformer_pos_emb", "sin"), what);
  d.positional_scale = t.positional_scale;
  d.kv_repeat = r.get_int("depformer_kv_repeat", t.kv_repeat, 1);
  if (r.get_bool("depformer_weights_per_step", false)) d.weights_per_step = c.dep_q;
  d.schedule = r.get_ints("depformer_weights_per_step_schedule");
  if (!d.schedule.empty()) {
    MOSHI_CHECK(static_cast<int>(d.schedule.size()) == c.dep_q, what, ": depformer_weights_per_step_schedule has ",
                d.schedule.size(), " entries for dep_q ", c.dep_q);
    MOSHI_CHECK(d.weights_per_step > 0, what, ": a weights-per-step schedule needs depformer_weights_per_step");
  }
  c.depformer_multi_linear = r.get_bool("depformer_multi_linear", false);
  c.depformer_low_rank = r.get_int("depformer_low_rank_embeddings", 0, 0);
  if (r.has("depformer_norm")) {
    c.depformer_has_norm = true;
    set_norm(r.get_str("depformer_norm", ""), what, &c.depformer_norm, &c.depformer_norm_eps);
  }
  MOSHI_CHECK(c.dim % t.num_heads == 0 && (c.dep_q == 0 || c.depformer_dim % d.num_heads == 0), what,
              ": model widths must split evenly into heads");
  return c;
}

LmConfig moshi_7b_config() {
  return parse_lm_config(R"({
    "dim": 4096, "text_card": 32000, "existing_text_padding_id": 3, "n_q": 16, "dep_q": 8, "card": 2048,
    "num_heads": 32, "num_layers": 32, "hidden_scale": 4.125, "causal": true, "layer_scale": null,
    "context": 3000, "max_period": 10000, "gating": "silu", "norm": "rms_norm_f32",
    "positional_embedding": "rope", "depformer_dim": 1024, "depformer_dim_feedforward": 4224,
    "depformer_num_heads": 16, "depformer_num_layers": 6, "depformer_layer_scale": null,
    "depformer_multi_linear": true, "depformer_context": 8, "depformer_max_period": 10000,
    "depformer_gating": "silu", "depformer_pos_emb": "none", "depformer_weights_per_step": true,
    "delays": [0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1]})",
                         "built-in Moshi 7B config");
}

LmConfig tiny_lm_config() {
  // The Moshi structure at toy size: 8 + 8 audio codebooks over a 2048-entry Mimi codebook, so
  // it pairs with a Mimi of the real card.
  return parse_lm_config(R"({
    "dim": 64, "text_card": 128, "existing_text_padding_id": 3, "n_q": 16, "dep_q": 8, "card": 2048,
    "num_heads": 4, "num_layers": 2, "hidden_scale": 4.125, "causal": true, "layer_scale": null,
    "context": 50, "max_period": 10000, "gating": "silu", "norm": "rms_norm_f32",
    "positional_embedding": "rope", "depformer_dim": 32, "depformer_dim_feedforward": 132,
    "depformer_num_heads": 2, "depformer_num_layers": 2, "depformer_multi_linear": true,
    "depformer_pos_emb": "none", "depformer_weights_per_step": true, "depformer_gating": "silu",
    "delays": [0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1]})",
                         "built-in tiny LM config");
}

}  // namespace moshi
