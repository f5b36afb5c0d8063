#include "moshi/audio.h"

#include <sndfile.h>
#include <soxr.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <numeric>
#include <system_error>

#include "core/error.h"

namespace moshi {
namespace {

// Interleaved floats per read/write block: big enough to amortise libsndfile's per-call cost,
// small enough that a 1024-channel file doesn't turn one block into a large allocation.
constexpr long long kBlockSamples = 1 << 16;

struct SndfileCloser {
  void operator()(SNDFILE* f) const { sf_close(f); }
};
using SndfilePtr = std::unique_ptr<SNDFILE, SndfileCloser>;

// Errors must be one line, and some libsndfile messages span several.
std::string one_line(const char* s) {
  std::string out = s ? s : "unknown libsndfile error";
  std::replace_if(out.begin(), out.end(), [](char c) { return c == '\n' || c == '\r'; }, ' ');
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

std::string format_name(int format) {
  const int major = format & SF_FORMAT_TYPEMASK;
  switch (major) {
    case SF_FORMAT_WAV:
    case SF_FORMAT_WAVEX: return "WAV";
    case SF_FORMAT_RF64: return "RF64";
    case SF_FORMAT_FLAC: return "FLAC";
    case SF_FORMAT_OGG: return "OGG";
    case SF_FORMAT_AIFF: return "AIFF";
    default: break;
  }
  // Less common containers: libsndfile's own extension is a reasonable short name.
  SF_FORMAT_INFO info{};
  info.format = major;
  if (sf_command(nullptr, SFC_GET_FORMAT_INFO, &info, sizeof(info)) == 0 && info.extension) {
    std::string ext = info.extension;
    for (char& c : ext) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return ext;
  }
  return "unknown";
}

std::string describe_channels(int channels) {
  if (channels == 1) return "mono";
  if (channels == 2) return "stereo";
  return std::to_string(channels) + "-channel";
}

void check_rate(int rate, const char* what) {
  MOSHI_CHECK(rate >= kMinSampleRate && rate <= kMaxSampleRate, what, " sample rate ", rate,
              " Hz is outside the supported range [", kMinSampleRate, ", ", kMaxSampleRate, "] Hz");
}

}  // namespace

long long resampled_length(long long in_len, int in_rate, int out_rate) {
  MOSHI_CHECK(in_len >= 0, "resample: negative input length ", in_len);
  MOSHI_CHECK(in_rate > 0 && out_rate > 0, "resample: sample rates must be positive (got ", in_rate,
              " -> ", out_rate, ")");
  // Reducing the ratio first keeps in_len * num far from overflow for any realistic length.
  const long long g = std::gcd(in_rate, out_rate);
  const long long num = out_rate / g, den = in_rate / g;
  MOSHI_CHECK(in_len <= (LLONG_MAX - den) / num, "resample: input of ", in_len, " samples is too long");
  return (in_len * num + den / 2) / den;
}

std::vector<float> resample(const std::vector<float>& in, int in_rate, int out_rate) {
  check_rate(in_rate, "resample: input");
  check_rate(out_rate, "resample: output");
  if (in_rate == out_rate) return in;
  const long long out_len = resampled_length(static_cast<long long>(in.size()), in_rate, out_rate);
  if (in.empty()) return {};

  // soxr_oneshot feeds everything and then flushes, so the filter tail is included and the
  // leading group delay is already removed. Its natural length can differ from out_len by a
  // sample or so; the small headroom lets us see that and trim/pad deterministically.
  std::vector<float> out(static_cast<size_t>(out_len) + 64);
  const soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
  const soxr_quality_spec_t quality = soxr_quality_spec(SOXR_VHQ, 0);
  size_t in_done = 0, out_done = 0;
  soxr_error_t err = soxr_oneshot(in_rate, out_rate, 1, in.data(), in.size(), &in_done, out.data(),
                                  out.size(), &out_done, &io, &quality, nullptr);
  MOSHI_CHECK(err == nullptr, "resample ", in_rate, " -> ", out_rate, " Hz failed: soxr: ", err);
  MOSHI_CHECK(in_done == in.size(), "resample ", in_rate, " -> ", out_rate, " Hz consumed only ",
              in_done, " of ", in.size(), " samples");
  out.resize(std::min(out_done, static_cast<size_t>(out_len)));
  out.resize(static_cast<size_t>(out_len), 0.0f);
  return out;
}

AudioData read_audio(const std::string& path, int target_rate) {
  check_rate(target_rate, "read_audio: target");
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  MOSHI_CHECK(std::filesystem::exists(st), "audio file not found: ", path);
  MOSHI_CHECK(!std::filesystem::is_directory(st), "audio path is a directory, not a file: ", path);

  SF_INFO info{};
  SndfilePtr file(sf_open(path.c_str(), SFM_READ, &info));
  MOSHI_CHECK(file != nullptr, "cannot read audio file ", path, ": ", one_line(sf_strerror(nullptr)));

  AudioData data;
  data.source.format = format_name(info.format);
  data.source.sample_rate = info.samplerate;
  data.source.channels = info.channels;
  MOSHI_CHECK(info.channels >= 1, path, ": invalid channel count ", info.channels);
  check_rate(info.samplerate, (path + ": source").c_str());

  // The header's frame count can be wrong (truncated or streamed files), so it only sizes the
  // reservation; the decoded count is what we report. The cap keeps a corrupt header from
  // provoking a huge up-front allocation.
  const int ch = info.channels;
  std::vector<float> mono;
  if (info.frames > 0) mono.reserve(static_cast<size_t>(std::min<sf_count_t>(info.frames, 1 << 26)));
  const long long block_frames = std::max<long long>(1, kBlockSamples / ch);
  std::vector<float> block(static_cast<size_t>(block_frames * ch));
  const float inv_ch = 1.0f / static_cast<float>(ch);
  for (;;) {
    const sf_count_t got = sf_readf_float(file.get(), block.data(), block_frames);
    if (got <= 0) break;
    if (ch == 1) {
      mono.insert(mono.end(), block.begin(), block.begin() + got);
      continue;
    }
    for (sf_count_t i = 0; i < got; ++i) {
      const float* frame = block.data() + i * ch;
      float sum = 0.0f;
      for (int c = 0; c < ch; ++c) sum += frame[c];
      mono.push_back(sum * inv_ch);
    }
  }
  const int sf_err = sf_error(file.get());
  MOSHI_CHECK(sf_err == SF_ERR_NO_ERROR, "error decoding audio file ", path, ": ",
              one_line(sf_strerror(file.get())));
  file.reset();

  data.source.frames = static_cast<long long>(mono.size());
  MOSHI_CHECK(!mono.empty(), "audio file ", path, " contains no audio samples");

  const bool downmix = ch != 1, resampled = info.samplerate != target_rate;
  if (downmix || resampled) {
    data.conversion = std::to_string(info.samplerate) + " Hz " + describe_channels(ch) + " -> " +
                      std::to_string(target_rate) + " Hz mono (";
    if (downmix) data.conversion += "downmixed";
    if (downmix && resampled) data.conversion += ", ";
    if (resampled) data.conversion += "resampled with soxr VHQ";
    data.conversion += ")";
  }
  data.samples = resampled ? resample(mono, info.samplerate, target_rate) : std::move(mono);
  return data;
}

void write_wav(const std::string& path, const float* samples, long long frames, int sample_rate,
               int channels, bool pcm16) {
  MOSHI_CHECK(!path.empty(), "write_wav: empty output path");
  MOSHI_CHECK(frames >= 0, "write_wav: negative frame count ", frames);
  MOSHI_CHECK(frames == 0 || samples != nullptr, "write_wav: null sample buffer for ", frames, " frames");
  MOSHI_CHECK(channels >= 1 && channels <= 1024, "write_wav: invalid channel count ", channels);
  check_rate(sample_rate, "write_wav:");
  // Plain RIFF sizes are 32-bit; failing up front beats libsndfile producing a broken header.
  const long long bytes_per_frame = static_cast<long long>(channels) * (pcm16 ? 2 : 4);
  MOSHI_CHECK(frames <= (static_cast<long long>(UINT32_MAX) - 4096) / bytes_per_frame, "write_wav: ",
              frames, " frames of ", channels, "-channel audio exceed the 4 GiB WAV limit");

  const std::string tmp = path + ".tmp";
  // Removes the partial temp file on any failure so a crash-free error leaves nothing behind.
  struct TmpGuard {
    const std::string& p;
    bool armed = true;
    ~TmpGuard() {
      if (armed) {
        std::error_code ec;
        std::filesystem::remove(p, ec);
      }
    }
  } guard{tmp};

  SF_INFO info{};
  info.samplerate = sample_rate;
  info.channels = channels;
  info.format = SF_FORMAT_WAV | (pcm16 ? SF_FORMAT_PCM_16 : SF_FORMAT_FLOAT);
  SNDFILE* raw = sf_open(tmp.c_str(), SFM_WRITE, &info);
  MOSHI_CHECK(raw != nullptr, "cannot create WAV file ", tmp, ": ", one_line(sf_strerror(nullptr)));
  SndfilePtr file(raw);
  // The PEAK chunk carries a timestamp: without it, the same samples give the same bytes.
  sf_command(file.get(), SFC_SET_ADD_PEAK_CHUNK, nullptr, SF_FALSE);

  const long long block_frames = std::max<long long>(1, kBlockSamples / channels);
  std::vector<float> clamped;
  if (pcm16) clamped.resize(static_cast<size_t>(std::min(frames, block_frames) * channels));
  for (long long done = 0; done < frames;) {
    const long long n = std::min(block_frames, frames - done);
    const float* src = samples + done * channels;
    if (pcm16) {
      // libsndfile does not clip float->int by default, so out-of-range values would wrap.
      for (long long i = 0; i < n * channels; ++i) {
        const float v = src[i];
        clamped[static_cast<size_t>(i)] = std::isnan(v) ? 0.0f : std::clamp(v, -1.0f, 1.0f);
      }
      src = clamped.data();
    }
    const sf_count_t wrote = sf_writef_float(file.get(), src, n);
    MOSHI_CHECK(wrote == n, "error writing WAV file ", tmp, ": ", one_line(sf_strerror(file.get())));
    done += n;
  }
  // Flush to disk before the rename so the final name never points at unwritten data.
  sf_write_sync(file.get());
  const int close_err = sf_close(file.release());
  MOSHI_CHECK(close_err == 0, "error closing WAV file ", tmp, ": ", one_line(sf_error_number(close_err)));

  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  MOSHI_CHECK(!ec, "cannot rename ", tmp, " to ", path, ": ", ec.message());
  guard.armed = false;
}

}  // namespace moshi
