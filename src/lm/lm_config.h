// The LM's configuration in the keys of a Kyutai config.json (model-spec §2.1), resolved the
// way the reference's LMModel resolves them: what the depformer inherits from the temporal
// transformer, and the feed-forward sizes.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "nn/transformer.h"

namespace moshi {

struct LmConfig {
  int dim = 4096;
  int text_card = 32000;
  int text_card_out = 32000;
  int existing_text_padding_id = 3;
  int existing_text_end_padding_id = 0;
  int n_q = 16;
  int dep_q = 8;
  int card = 2048;
  std::vector<int> delays = {0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1};
  bool bias_proj = false;
  int extra_heads_num_heads = 0;
  int extra_heads_dim = 6;

  TransformerSpec temporal;  // d_model = dim
  NormKind out_norm = NormKind::RmsNorm;
  float out_norm_eps = 1e-8f;

  int depformer_dim = 1024;
  TransformerSpec depformer;  // d_model = depformer_dim; weights per step when configured
  bool depformer_multi_linear = true;
  int depformer_low_rank = 0;        // 0: full-rank embeddings
  bool depformer_has_norm = false;   // depformer_norms (identity when absent)
  NormKind depformer_norm = NormKind::RmsNorm;
  float depformer_norm_eps = 1e-8f;

  std::string source;  // where it came from, for messages

  int num_codebooks() const { return 1 + n_q; }  // text + audio streams
  int max_delay() const;
  int depformer_in_count() const;  // depformer_in linears
  int depformer_in_index(int k) const;
};

// Moshi 7B (configs/moshi_7b_202409.json).
LmConfig moshi_7b_config();
// A small consistent model for tests and demos (`synthetic:tiny`).
LmConfig tiny_lm_config();
// Parses the JSON text of a Kyutai config.json, or of an object holding one under "lm_config".
// Unsupported features (cross attention, conditioners, LoRA, quantized, demuxed streams) fail
// with a one-line message.
LmConfig parse_lm_config(const std::string& json_text, const std::string& what);

}  // namespace moshi
