// moshi-rt run: speech-to-speech from a file, exactly as the live loop would run it.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "args.h"
#include "commands.h"
#include "moshi/audio.h"
#include "moshi/model.h"
#include "moshi/run.h"
#include "moshi/system.h"
#include "progress.h"

namespace {

std::string json_escape(const std::string& s) {
  std::string o;
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      o.push_back('\\');
      o.push_back(static_cast<char>(c));
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      o += buf;
    } else {
      o.push_back(static_cast<char>(c));
    }
  }
  return o;
}

void write_text_file(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary);
    if (!f) throw moshi::Error(path + ": cannot write");
    f << text;
    if (!f) throw moshi::Error(path + ": write failed");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw moshi::Error(path + ": cannot write");
}

}  // namespace

int cmd_run(int argc, char** argv) {
  cli::Args a("moshi-rt run --input IN.wav --output OUT.wav [options]",
              "Runs Moshi on a recorded input as it would run live: the input (any rate or channel count,\n"
              "converted to 24 kHz mono) is fed 80 ms at a time, followed by --after seconds of silence so the\n"
              "model can answer; writes the model's speech and, optionally, its text. Same inputs and seed give\n"
              "byte-identical outputs; the sha256 of every file written is printed.",
              {{"model", "SPEC", "model directory, Hugging Face repo id, synthetic:moshi-7b or synthetic:tiny "
                                 "(random weights: nonsense speech)", "kyutai/moshiko-pytorch-bf16"},
               {"input", "PATH", "input audio (WAV/FLAC/OGG) (required)", ""},
               {"output", "PATH", "output WAV, 24 kHz, 32-bit float (required)", ""},
               {"text", "PATH", "write the model's text transcript", ""},
               {"json", "PATH", "write text pieces with per-frame timestamps, settings and timings", ""},
               {"seed", "N", "sampling seed", "0"},
               {"temp", "T", "audio temperature (default: the model's, 0.8)", ""},
               {"temp-text", "T", "text temperature (default: the model's, 0.7)", ""},
               {"top-k", "K", "audio top-k (default: the model's, 250)", ""},
               {"top-k-text", "K", "text top-k (default: the model's, 25)", ""},
               {"greedy", "", "argmax decoding for text and audio", ""},
               {"after", "SECONDS", "silence appended after the input so the model can answer", "2"},
               {"stereo", "", "write user (left) and model (right) channels", ""},
               {"device", "NAME", "compute device", "cpu"},
               {"threads", "N", "CPU threads (0 = all cores)", "0"},
               {"dtype", "TYPE", "LM matrix weights: auto, bf16 or f32", "auto"},
               {"offline", "", "never download (as HF_HUB_OFFLINE=1)", ""},
               {"memory-limit", "GB", "refuse models estimated above this (default: available memory)", ""}},
              0, 0);
  if (!a.parse(argc, argv, 1)) return 0;
  if (!a.given("input")) throw moshi::Error("--input is required");
  if (!a.given("output")) throw moshi::Error("-o/--output is required");
  const double after = a.number("after", 0, 600);
  // Validate every value before the (long) model load.
  moshi::ModelOptions mo;
  mo.device = a.str("device");
  mo.threads = a.integer("threads", 0, 1024);
  mo.weights_dtype = a.str("dtype");
  if (mo.weights_dtype != "auto" && mo.weights_dtype != "bf16" && mo.weights_dtype != "f32")
    throw moshi::Error("--dtype must be auto, bf16 or f32");
  mo.download = !a.flag("offline");
  if (a.given("memory-limit")) mo.memory_limit_gb = a.number("memory-limit", 0.1, 1e6);
  const uint64_t seed = static_cast<uint64_t>(a.integer("seed", 0, 2147483647));
  if (a.given("temp")) a.number("temp", 0, 100);
  if (a.given("temp-text")) a.number("temp-text", 0, 100);
  if (a.given("top-k")) a.integer("top-k", 0, 1 << 20);
  if (a.given("top-k-text")) a.integer("top-k-text", 0, 1 << 20);

  // A bad input fails here, before the (long) model load.
  moshi::AudioData in = moshi::read_audio(a.str("input"), 24000);
  if (!in.conversion.empty()) std::fprintf(stderr, "input: %s\n", in.conversion.c_str());
  std::fprintf(stderr, "loading %s ...\n", a.str("model").c_str());
  moshi::Model model = moshi::Model::load(a.str("model"), mo);
  std::fprintf(stderr, "model: %s\n", model.describe().c_str());

  moshi::RunOptions ro;
  moshi::SessionOptions& so = ro.session;
  so.seed = seed;
  so.sampling = model.default_sampling();
  so.sampling.greedy = a.flag("greedy");
  if (a.given("temp")) so.sampling.temp = static_cast<float>(a.number("temp", 0, 100));
  if (a.given("temp-text")) so.sampling.temp_text = static_cast<float>(a.number("temp-text", 0, 100));
  if (a.given("top-k")) so.sampling.top_k = a.integer("top-k", 0, 1 << 20);
  if (a.given("top-k-text")) so.sampling.top_k_text = a.integer("top-k-text", 0, 1 << 20);
  ro.after_s = after;
  ro.stereo = a.flag("stereo");
  const long long total =
      (static_cast<long long>(in.samples.size() + static_cast<size_t>(after * model.sample_rate())) +
       model.frame_size() - 1) / model.frame_size();
  Progress progress("run", total, 1.0 / model.frame_rate());
  ro.progress = [&](int64_t done, int64_t) { progress.update(done); };
  const std::string out_path = a.str("output");
  const moshi::RunResult res = moshi::run_file(model, a.str("input"), out_path, ro);
  const std::vector<moshi::TextPiece>& text = res.text;
  std::vector<std::pair<std::string, std::string>> written;
  written.emplace_back(out_path, moshi::file_sha256(out_path));
  const std::string& transcript = res.transcript;
  if (a.given("text")) {
    write_text_file(a.str("text"), transcript + "\n");
    written.emplace_back(a.str("text"), moshi::file_sha256(a.str("text")));
  }
  const moshi::SessionTimings& t = res.timings;
  if (a.given("json")) {
    std::string j = "{\"model\":\"" + json_escape(a.str("model")) + "\",\"input\":\"" + json_escape(a.str("input")) +
                    "\",\"seed\":" + std::to_string(seed) + ",\"greedy\":" + (so.sampling.greedy ? "true" : "false");
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  ",\"temp\":%g,\"temp_text\":%g,\"top_k\":%d,\"top_k_text\":%d,\"after_s\":%g,\"frames\":%lld"
                  ",\"output_seconds\":%.3f",
                  so.sampling.temp, so.sampling.temp_text, so.sampling.top_k, so.sampling.top_k_text, after,
                  static_cast<long long>(t.frames), res.output_seconds);
    j += buf;
    j += ",\"transcript\":\"" + json_escape(transcript) + "\",\"text\":[";
    for (size_t i = 0; i < text.size(); ++i) {
      std::snprintf(buf, sizeof buf, "%s{\"frame\":%lld,\"time_s\":%.3f,\"token\":%lld,\"text\":\"", i ? "," : "",
                    static_cast<long long>(text[i].frame), text[i].time_s, static_cast<long long>(text[i].token));
      j += buf + json_escape(text[i].text) + "\"}";
    }
    std::snprintf(buf, sizeof buf,
                  "],\"timings_ms\":{\"mimi_encode\":%.1f,\"lm_temporal\":%.1f,\"lm_depformer\":%.1f,"
                  "\"mimi_decode\":%.1f}}\n",
                  t.mimi_encode_ms, t.lm_temporal_ms, t.lm_depformer_ms, t.mimi_decode_ms);
    j += buf;
    write_text_file(a.str("json"), j);
    written.emplace_back(a.str("json"), moshi::file_sha256(a.str("json")));
  }
  const double total_ms = t.mimi_encode_ms + t.lm_temporal_ms + t.lm_depformer_ms + t.mimi_decode_ms;
  std::fprintf(stderr, "%lld frames (%.2f s of audio) in %.1f s: %.2fx real time%s\n", static_cast<long long>(t.frames),
               res.output_seconds, total_ms / 1000,
               total_ms > 0 ? t.frames * 1000.0 / model.frame_rate() / total_ms : 0.0,
               model.synthetic() ? " (synthetic weights: the speech is nonsense)" : "");
  if (!transcript.empty()) std::fprintf(stderr, "text: %s\n", transcript.c_str());
  for (const auto& [path, sha] : written) std::printf("sha256 %s  %s\n", sha.c_str(), path.c_str());
  return 0;
}
