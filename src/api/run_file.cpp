#include "moshi/run.h"

#include "core/error.h"
#include "moshi/audio.h"

namespace moshi {

RunResult run_file(const Model& model, const std::string& input, const std::string& output_wav,
                   const RunOptions& opts) {
  MOSHI_CHECK(opts.after_s >= 0 && opts.after_s <= 3600, "after_s = ", opts.after_s, " is out of range [0, 3600]");
  AudioData in = read_audio(input, model.sample_rate());
  RunResult r;
  r.conversion = in.conversion;
  Session session = model.session(opts.session);
  const int sr = model.sample_rate(), fs = model.frame_size();
  std::vector<float> pcm = std::move(in.samples);
  pcm.resize(pcm.size() + static_cast<size_t>(opts.after_s * sr), 0.f);
  const int64_t frames = (static_cast<int64_t>(pcm.size()) + fs - 1) / fs;
  pcm.resize(static_cast<size_t>(frames) * fs, 0.f);
  for (int64_t f = 0; f < frames; ++f) {
    session.push_audio(pcm.data() + f * fs, fs);
    if (opts.progress) opts.progress(f + 1, frames);
  }
  std::vector<float> out;
  session.pull_audio(out);
  r.text = session.pull_text();
  for (const auto& p : r.text) r.transcript += p.text;
  if (!r.transcript.empty() && r.transcript[0] == ' ') r.transcript.erase(0, 1);
  if (opts.stereo) {
    std::vector<float> lr(out.size() * 2);
    for (size_t i = 0; i < out.size(); ++i) {
      lr[2 * i] = i < pcm.size() ? pcm[i] : 0.f;
      lr[2 * i + 1] = out[i];
    }
    write_wav(output_wav, lr.data(), static_cast<long long>(out.size()), sr, 2);
  } else {
    write_wav(output_wav, out.data(), static_cast<long long>(out.size()), sr, 1);
  }
  r.timings = session.timings();
  r.frames = r.timings.frames;
  r.output_seconds = out.size() / static_cast<double>(sr);
  return r;
}

}  // namespace moshi
