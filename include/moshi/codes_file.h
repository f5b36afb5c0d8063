// moshi-rt public API: Mimi code files. A codes file is safetensors with an int64 tensor
// `codes` [1, K, T] and string metadata (format, sample_rate, frame_rate, frame_size,
// num_codebooks, samples = the audio length before padding to whole frames, source).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace moshi {

struct CodesFile {
  std::vector<int64_t> codes;  // [K, T] row-major
  int num_codebooks = 0;       // K
  int64_t frames = 0;          // T
  int sample_rate = 24000;
  double frame_rate = 12.5;
  int frame_size = 1920;
  int64_t samples = 0;         // original audio length in samples at sample_rate (0 = T·frame_size)
  std::string source;          // the codec that made them
};

void write_codes_file(const std::string& path, const CodesFile& c);
// Throws moshi::Error (one line) if the file is missing, corrupt, or holds no int codes [1, K, T].
CodesFile read_codes_file(const std::string& path);

}  // namespace moshi
