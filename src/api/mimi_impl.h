// What sits behind the public moshi::Mimi handle.
#pragma once
#include "codec/mimi_model.h"
#include "moshi/mimi.h"

namespace moshi {

struct Mimi::Impl {
  std::shared_ptr<const MimiModel> model;
  int num_codebooks = 8;
  bool synthetic = false;
  std::string source;
};

}  // namespace moshi
