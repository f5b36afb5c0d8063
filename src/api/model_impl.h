// What sits behind the public moshi::Model handle (shared with compare and doctor).
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "codec/mimi_model.h"
#include "lm/lm_model.h"
#include "moshi/model.h"
#include "moshi/text.h"

namespace moshi {

struct Model::Impl {
  std::shared_ptr<const LmModel> lm;
  std::shared_ptr<const MimiModel> mimi;
  std::optional<TextTokenizer> tokenizer;
  SamplingOptions sampling;  // lm_gen_config defaults
  bool synthetic = false;
  std::string source;
  double estimate_gb = 0;
};

}  // namespace moshi
