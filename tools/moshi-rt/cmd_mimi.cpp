// moshi-rt mimi encode | decode | roundtrip
#include <cstdio>
#include <string>
#include <vector>

#include "args.h"
#include "commands.h"
#include "moshi/audio.h"
#include "moshi/codes_file.h"
#include "moshi/mimi.h"
#include "progress.h"

namespace {

std::vector<cli::Option> codec_options(bool codebooks, bool wav_out = true) {
  std::vector<cli::Option> o = {
      {"output", "PATH", "where to write the result (required)", ""},
      {"mimi", "PATH|synthetic",
       "Mimi checkpoint (tokenizer-e351c8d8-checkpoint125.safetensors), or 'synthetic' for seeded random weights "
       "with the real shapes (makes no meaningful audio)",
       ""},
      {"mimi-config", "JSON", "file holding a mimi_config in the reference's schema (default: the released Mimi)", ""},
      {"device", "NAME", "compute device", "cpu"},
      {"threads", "N", "CPU threads (0 = all cores)", "0"},
      {"seed", "N", "seed of the synthetic weights", "0"},
  };
  if (codebooks) o.push_back({"codebooks", "N", "codebooks to emit (1..32)", "8"});
  if (wav_out) o.push_back({"pcm16", "", "write 16-bit PCM instead of 32-bit float WAV", ""});
  return o;
}

moshi::Mimi load_codec(const cli::Args& a) {
  if (!a.given("mimi"))
    throw moshi::Error("--mimi is required: a Mimi checkpoint file, or 'synthetic' for random weights");
  moshi::MimiOptions o;
  o.device = a.str("device");
  o.threads = a.integer("threads", 0, 1024);
  o.seed = static_cast<uint64_t>(a.integer("seed", 0, 1 << 30));
  if (a.given("codebooks")) o.num_codebooks = a.integer("codebooks", 1, 1024);
  if (a.given("mimi-config")) {
    FILE* f = std::fopen(a.str("mimi-config").c_str(), "rb");
    if (!f) throw moshi::Error(a.str("mimi-config") + ": cannot open");
    std::string text;
    char buf[4096];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) text.append(buf, n);
    std::fclose(f);
    o.config_json = text;  // a bare mimi_config, or any JSON object holding one under "mimi_config"
  }
  return moshi::Mimi::load(a.str("mimi"), o);
}

void note_synthetic(const moshi::Mimi& m) {
  if (m.synthetic()) std::fprintf(stderr, "note: synthetic Mimi weights: the output carries no meaningful audio\n");
}

std::string require_output(const cli::Args& a) {
  if (!a.given("output")) throw moshi::Error("-o/--output is required");
  return a.str("output");
}

// Streams whole-file audio through the encoder frame by frame, with progress.
moshi::CodesFile encode_file(const moshi::Mimi& m, const std::string& in) {
  moshi::AudioData audio = moshi::read_audio(in, m.sample_rate());
  if (!audio.conversion.empty()) std::fprintf(stderr, "input: %s\n", audio.conversion.c_str());
  const int64_t fs = m.frame_size(), n = static_cast<int64_t>(audio.samples.size()), T = (n + fs - 1) / fs;
  audio.samples.resize(T * fs, 0.f);
  const int K = m.num_codebooks();
  moshi::CodesFile c;
  c.codes.assign(K * T, 0);
  c.num_codebooks = K;
  c.frames = T;
  c.sample_rate = m.sample_rate();
  c.frame_rate = m.frame_rate();
  c.frame_size = static_cast<int>(fs);
  c.samples = n;
  c.source = m.describe();
  moshi::MimiEncoder enc = m.encoder(1);
  Progress p("encode", T, 1.0 / m.frame_rate());
  for (int64_t t = 0; t < T; ++t) {
    std::vector<int64_t> f = enc.encode(audio.samples.data() + t * fs, fs);
    for (int k = 0; k < K; ++k) c.codes[k * T + t] = f[k];
    p.update(t + 1);
  }
  return c;
}

std::vector<float> decode_codes(const moshi::Mimi& m, const moshi::CodesFile& c) {
  if (c.num_codebooks > m.total_codebooks())
    throw moshi::Error("codes have " + std::to_string(c.num_codebooks) + " codebooks, the codec has " +
                       std::to_string(m.total_codebooks()));
  if (c.sample_rate != m.sample_rate() || c.frame_size != m.frame_size())
    throw moshi::Error("codes were made for " + std::to_string(c.sample_rate) + " Hz / " +
                       std::to_string(c.frame_size) + "-sample frames, this codec uses " +
                       std::to_string(m.sample_rate()) + " Hz / " + std::to_string(m.frame_size()));
  const int64_t fs = m.frame_size(), T = c.frames;
  std::vector<float> pcm(T * fs);
  std::vector<int64_t> frame(c.num_codebooks);
  moshi::MimiDecoder dec = m.decoder(1);
  Progress p("decode", T, 1.0 / m.frame_rate());
  for (int64_t t = 0; t < T; ++t) {
    for (int k = 0; k < c.num_codebooks; ++k) frame[k] = c.codes[k * T + t];
    std::vector<float> out = dec.decode(frame.data(), c.num_codebooks, 1);
    std::copy(out.begin(), out.end(), pcm.begin() + t * fs);
    p.update(t + 1);
  }
  if (c.samples > 0) pcm.resize(c.samples);  // drop the padding of the last frame
  return pcm;
}

}  // namespace

int cmd_mimi(int argc, char** argv) {
  const std::string sub = argc >= 2 ? argv[1] : "";
  if (sub == "encode") {
    cli::Args a("moshi-rt mimi encode IN -o CODES.safetensors [options]",
                "Encodes an audio file (WAV/FLAC/OGG, any rate or channel count; converted to 24 kHz mono) into\n"
                "Mimi codes, streaming one 80 ms frame at a time. The codes file is safetensors with an int64\n"
                "tensor 'codes' [1, K, T] and metadata.",
                codec_options(true, false), 1, 1);
    if (!a.parse(argc, argv, 2)) return 0;
    const std::string out = require_output(a);
    moshi::Mimi m = load_codec(a);
    moshi::CodesFile c = encode_file(m, a.positional()[0]);
    moshi::write_codes_file(out, c);
    note_synthetic(m);
    std::fprintf(stderr, "wrote %s: %d codebooks x %lld frames\n", out.c_str(), c.num_codebooks,
                 static_cast<long long>(c.frames));
    return 0;
  }
  if (sub == "decode") {
    cli::Args a("moshi-rt mimi decode CODES.safetensors -o OUT.wav [options]",
                "Decodes a Mimi codes file into a 24 kHz mono WAV (32-bit float unless --pcm16).",
                codec_options(false, true), 1, 1);
    if (!a.parse(argc, argv, 2)) return 0;
    const std::string out = require_output(a);
    moshi::CodesFile c = moshi::read_codes_file(a.positional()[0]);
    moshi::Mimi m = load_codec(a);
    std::vector<float> pcm = decode_codes(m, c);
    moshi::write_wav(out, pcm.data(), static_cast<long long>(pcm.size()), m.sample_rate(), 1, a.flag("pcm16"));
    note_synthetic(m);
    std::fprintf(stderr, "wrote %s: %.2f s at %d Hz\n", out.c_str(), pcm.size() / double(m.sample_rate()),
                 m.sample_rate());
    return 0;
  }
  if (sub == "roundtrip") {
    cli::Args a("moshi-rt mimi roundtrip IN -o OUT.wav [options]",
                "Encodes an audio file into Mimi codes and decodes them again (24 kHz mono WAV, 32-bit float unless --pcm16).",
                codec_options(true), 1, 1);
    if (!a.parse(argc, argv, 2)) return 0;
    const std::string out = require_output(a);
    moshi::Mimi m = load_codec(a);
    moshi::CodesFile c = encode_file(m, a.positional()[0]);
    std::vector<float> pcm = decode_codes(m, c);
    moshi::write_wav(out, pcm.data(), static_cast<long long>(pcm.size()), m.sample_rate(), 1, a.flag("pcm16"));
    note_synthetic(m);
    std::fprintf(stderr, "wrote %s: %.2f s at %d Hz through %d codebooks (%s)\n", out.c_str(),
                 pcm.size() / double(m.sample_rate()), m.sample_rate(), c.num_codebooks, m.describe().c_str());
    return 0;
  }
  if (sub.empty() || sub == "--help" || sub == "-h") {
    std::printf(
        "usage: moshi-rt mimi <encode|decode|roundtrip> ... (--help on each for options)\n\n"
        "  encode IN -o CODES     audio file -> Mimi codes (safetensors)\n"
        "  decode CODES -o OUT    Mimi codes -> 24 kHz WAV\n"
        "  roundtrip IN -o OUT    audio -> codes -> audio\n");
    return sub.empty() ? 2 : 0;
  }
  throw moshi::Error("unknown mimi command '" + sub + "' (encode, decode, roundtrip)");
}
