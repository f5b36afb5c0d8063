// moshi-rt public API: audio files at the engine's edges. Decodes anything libsndfile reads into
// mono float at the model rate and writes WAV results; third-party headers stay in the library.
#pragma once
#include <string>
#include <vector>

namespace moshi {

// Sample rates outside this range are rejected as corrupt headers or caller bugs rather than
// handed to soxr, which would happily try to build gigantic filters for them.
inline constexpr int kMinSampleRate = 1000;
inline constexpr int kMaxSampleRate = 768000;

struct AudioInfo {  // what the file was before conversion
  int sample_rate = 0;
  int channels = 0;
  long long frames = 0;  // per channel
  std::string format;    // e.g. "WAV", "FLAC", "OGG"
};

struct AudioData {
  std::vector<float> samples;  // mono, target_rate
  AudioInfo source;
  // One line describing what was done, e.g.
  // "48000 Hz stereo -> 24000 Hz mono (downmixed, resampled with soxr VHQ)"; empty if nothing was.
  std::string conversion;
};

// Reads any libsndfile-supported file, averages channels to mono and resamples to target_rate
// (soxr VHQ). Throws moshi::Error with one line on a missing/unreadable/empty file or a bad rate.
AudioData read_audio(const std::string& path, int target_rate = 24000);

// Writes interleaved samples as WAV (32-bit float, or 16-bit PCM clamped to [-1,1] if pcm16).
// Atomic: writes path + ".tmp" and renames it over path. Throws moshi::Error on failure.
void write_wav(const std::string& path, const float* samples, long long frames, int sample_rate,
               int channels = 1, bool pcm16 = false);

// Resamples mono audio with soxr VHQ. The output has exactly round(in.size() * out_rate / in_rate)
// samples and is time-aligned with the input (soxr's filter delay is compensated).
// Returns the input unchanged if the rates are equal.
std::vector<float> resample(const std::vector<float>& in, int in_rate, int out_rate);

// The exact output length resample() produces: round(in_len * out_rate / in_rate), halves up.
long long resampled_length(long long in_len, int in_rate, int out_rate);

}  // namespace moshi
