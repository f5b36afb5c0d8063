// The tolerance table, keyed by (stage, precision). Values are the golden README's; a looser
// entry must say why.
#pragma once
#include <string>

namespace moshi {

struct Tolerance {
  double max_abs = 0;        // float outputs: |engine - reference| <= max_abs everywhere
  double min_agreement = 1;  // integer outputs: fraction of equal positions
  bool first_row_exact = false;  // integer outputs: row 0 (e.g. semantic codebook) must agree fully
};

enum class Stage { MimiCodes, MimiLatent, MimiDecoded, LmTokens, LmLogits };

inline Tolerance tolerance(Stage s, const std::string& precision = "f32") {
  (void)precision;  // only f32 compute is compared against the golden files
  switch (s) {
    case Stage::MimiCodes: return {0, 0.99, true};
    case Stage::MimiLatent: return {1e-4, 1, false};
    case Stage::MimiDecoded: return {1e-4, 1, false};
    case Stage::LmTokens: return {0, 1, false};
    case Stage::LmLogits: return {1e-4, 1, false};
  }
  return {};
}

}  // namespace moshi
