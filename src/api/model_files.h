// Where a model's files are: resolving a model spec (local directory or Hugging Face repo id)
// into the LM weights, Mimi weights, text tokenizer and config, as the reference's
// CheckpointInfo does.
#pragma once
#include <string>

#include "moshi/model.h"

namespace moshi {

struct ModelFiles {
  std::string lm_weights, mimi_weights, tokenizer;
  std::string config_json;  // text of config.json, or "" when the repo has none
  std::string source;       // for messages: the directory or repo id
};

// Names default to the Moshi 7B release (model.safetensors,
// tokenizer-e351c8d8-checkpoint125.safetensors, tokenizer_spm_32k_3.model); config.json's
// moshi_name / mimi_name / tokenizer_name override them.
ModelFiles resolve_model_files(const std::string& spec, const ModelOptions& opts);

}  // namespace moshi
