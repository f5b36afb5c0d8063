// moshi-rt public API: speech to speech from a file, as `moshi-rt run` does it.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "moshi/model.h"

namespace moshi {

struct RunOptions {
  SessionOptions session;
  double after_s = 2.0;  // silence appended so the model can answer
  bool stereo = false;   // user left, model right
  // Called after every frame with (frames done, frames total); may be empty.
  std::function<void(int64_t, int64_t)> progress;
};

struct RunResult {
  std::vector<TextPiece> text;
  std::string transcript;  // the pieces joined, without the leading space
  std::string conversion;  // what was done to the input ("" if it was 24 kHz mono)
  int64_t frames = 0;
  double output_seconds = 0;
  SessionTimings timings;
};

// Reads `input` (any rate and channel count), feeds it 80 ms at a time followed by
// after_s of silence (a trailing partial frame is zero-padded, not dropped), and writes the
// model's speech to `output_wav` (24 kHz, 32-bit float). Deterministic for a given seed.
RunResult run_file(const Model& model, const std::string& input, const std::string& output_wav,
                   const RunOptions& opts = {});

}  // namespace moshi
