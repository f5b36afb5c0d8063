// moshi-rt public API: run the same input through two device:dtype configurations and say
// where they part (`moshi-rt compare`).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "moshi/lm.h"

namespace moshi {

struct CompareOptions {
  std::string model = "synthetic:tiny";
  std::string input;             // audio file
  std::string a = "cpu:f32";     // DEVICE:DTYPE, dtype of the LM matrices: f32, bf16 or auto
  std::string b = "cpu:f32";
  int64_t steps = 0;             // frames to run; 0 = the whole input
  uint64_t seed = 0;
  SamplingOptions sampling;
  int threads = 0;
  std::string dump_dir;          // if set: per-layer activations of both runs as safetensors
};

struct StageReport {
  std::string stage;             // "mimi codes", "lm text logits", "text tokens", "audio tokens", "decoded pcm"
  bool agree = true;
  int64_t first_divergence = -1; // step where it first goes beyond the tolerance
  double max_abs = 0, max_rel = 0;
  double agreement = 1;          // for tokens and codes: fraction equal
  std::string rule;              // the tolerance applied
};

struct CompareReport {
  std::vector<StageReport> stages;
  int64_t steps = 0;
  std::string sha256_a, sha256_b;  // of the decoded output audio (f32 bytes)
  std::string first_activation;    // with dump_dir: "step S, NAME (max abs X)" where the runs first part
  bool agree() const {
    for (const auto& s : stages)
      if (!s.agree) return false;
    return true;
  }
};

CompareReport compare_runs(const CompareOptions& opts);

}  // namespace moshi
