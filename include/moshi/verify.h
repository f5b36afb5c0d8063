// Golden-case verification: runs a case folder (config.json, weights.safetensors,
// io.safetensors; see shared/golden/README.md) through the engine and compares every output
// with the reference under the tolerance table.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace moshi {

struct VerifyOptions {
  std::string device = "cpu";
  int threads = 0;
  std::string out_path;  // if set, write what the engine produced as safetensors (io names)
};

struct VerifyCheck {
  std::string tensor;     // io tensor name, e.g. "codes_stream"
  std::string rule;       // the tolerance applied, in words
  int64_t compared = 0;   // elements compared
  int64_t mismatches = 0; // elements outside the tolerance
  double max_abs = 0;     // largest absolute difference (float tensors)
  bool pass = false;
  std::string note;       // extra facts (e.g. frames compared, agreement ratio)
};

struct VerifyReport {
  std::string kind;  // "mimi" or "lm"
  std::vector<VerifyCheck> checks;
  bool passed() const {
    if (checks.empty()) return false;
    for (const auto& c : checks)
      if (!c.pass) return false;
    return true;
  }
};

VerifyReport verify_case(const std::string& case_dir, const VerifyOptions& opts = {});

}  // namespace moshi
