// A minimal program over moshi-rt's public API: Moshi answers a recorded input.
//   speech_to_speech MODEL IN.wav OUT.wav
// MODEL: a model directory, a Hugging Face repo id, or synthetic:tiny (random weights).
#include <cstdio>
#include <vector>

#include "moshi/audio.h"
#include "moshi/model.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s MODEL IN.wav OUT.wav\n", argv[0]);
    return 2;
  }
  try {
    moshi::Model model = moshi::Model::load(argv[1]);
    moshi::AudioData in = moshi::read_audio(argv[2], model.sample_rate());
    in.samples.resize(in.samples.size() + 2 * model.sample_rate(), 0.f);  // 2 s to answer

    moshi::SessionOptions opts;
    opts.seed = 42;
    moshi::Session session = model.session(opts);
    // Audio can arrive in any chunk size; every complete 80 ms frame runs one step.
    const size_t chunk = 1000;
    for (size_t off = 0; off < in.samples.size(); off += chunk)
      session.push_audio(in.samples.data() + off, std::min(chunk, in.samples.size() - off));
    session.flush();

    std::vector<float> out;
    session.pull_audio(out);
    for (const moshi::TextPiece& p : session.pull_text()) std::printf("%6.2f s %s\n", p.time_s, p.text.c_str());
    moshi::write_wav(argv[3], out.data(), static_cast<long long>(out.size()), model.sample_rate());
    std::printf("wrote %s (%.2f s)\n", argv[3], out.size() / double(model.sample_rate()));
  } catch (const moshi::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
