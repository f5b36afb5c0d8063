// Speech-to-speech from a file: the public Model/Session API and `moshi-rt run` end to end on
// tiny models (synthetic and from a model directory), determinism, and every bad-input path.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <random>

#include "codec/mimi_model.h"
#include "lm/lm_model.h"
#include "moshi/audio.h"
#include "moshi/model.h"
#include "test_util.h"
#include "weights/safetensors.h"
#include "weights/weight_source.h"

using namespace moshi;
using testutil::run_cli;

namespace {

std::string tmp(const std::string& name) { return testing::TempDir() + "moshi_run_" + std::to_string(getpid()) + "_" + name; }

std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// 1.5 s of 48 kHz stereo: two different tones.
std::string stereo_input() {
  static const std::string path = [] {
    const std::string p = tmp("in48k_stereo.wav");
    std::vector<float> lr(72000 * 2);
    for (int i = 0; i < 72000; ++i) {
      lr[2 * i] = 0.3f * std::sin(2 * M_PI * 220 * i / 48000.0);
      lr[2 * i + 1] = 0.2f * std::sin(2 * M_PI * 330 * i / 48000.0);
    }
    write_wav(p, lr.data(), 72000, 48000, 2);
    return p;
  }();
  return path;
}

void expect_one_line_error(const testutil::RunResult& r, const std::string& needle) {
  EXPECT_NE(r.status, 0) << r.err;
  EXPECT_EQ(testutil::count_lines(r.err.substr(r.err.find("moshi-rt: error"))), 1) << r.err;
  EXPECT_NE(r.err.find("moshi-rt: error"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
}

}  // namespace

TEST(Run, SameSeedSameBytesOtherSeedDiffers) {
  const std::string in = stereo_input();
  const std::string a = tmp("a.wav"), b = tmp("b.wav"), c = tmp("c.wav");
  auto ra = run_cli("run --model synthetic:tiny --input " + in + " --output " + a + " --seed 7");
  ASSERT_EQ(ra.status, 0) << ra.err;
  auto rb = run_cli("run --model synthetic:tiny --input " + in + " --output " + b + " --seed 7");
  ASSERT_EQ(rb.status, 0) << rb.err;
  auto rc = run_cli("run --model synthetic:tiny --input " + in + " --output " + c + " --seed 8");
  ASSERT_EQ(rc.status, 0) << rc.err;
  EXPECT_EQ(slurp(a), slurp(b));
  EXPECT_NE(slurp(a), slurp(c));
  EXPECT_NE(ra.out.find("sha256 "), std::string::npos);
  EXPECT_EQ(ra.out.substr(0, 71), rb.out.substr(0, 71));  // "sha256 " + 64 hex
  EXPECT_NE(ra.err.find("48000 Hz stereo -> 24000 Hz mono"), std::string::npos) << ra.err;
  AudioData o = read_audio(a, 24000);
  EXPECT_EQ(o.source.sample_rate, 24000);
  EXPECT_EQ(o.source.channels, 1);
  EXPECT_GE(o.samples.size(), 36000u + 2 * 24000u);  // the input plus the default 2 s after it
}

TEST(Run, StereoTextAndJsonOutputs) {
  const std::string out = tmp("st.wav"), txt = tmp("st.txt"), js = tmp("st.json");
  auto r = run_cli("run --model synthetic:tiny --input " + stereo_input() + " --output " + out + " --text " + txt +
                   " --json " + js + " --stereo --after 0.5 --seed 3 --temp 0.9 --top-k 50");
  ASSERT_EQ(r.status, 0) << r.err;
  AudioData o = read_audio(out, 24000);
  EXPECT_EQ(o.source.channels, 2);
  EXPECT_GE(o.source.frames, 36000 + 12000);
  const std::string j = slurp(js);
  for (const char* key : {"\"text\":[", "\"frame\":", "\"time_s\":", "\"seed\":3", "\"top_k\":50", "\"timings_ms\""})
    EXPECT_NE(j.find(key), std::string::npos) << key << " in " << j;
  EXPECT_FALSE(slurp(txt).empty());
  // Three files written, three hashes printed.
  EXPECT_EQ(testutil::count_lines(r.out), 3) << r.out;
}

TEST(Run, SessionApiChunkingAndReset) {
  Model m = Model::load("synthetic:tiny");
  SessionOptions so;
  so.seed = 5;
  Session s = m.session(so);
  std::vector<float> in(1920 * 6);
  for (size_t i = 0; i < in.size(); ++i) in[i] = 0.2f * std::sin(0.01f * i);
  // Any chunk size: 700 samples at a time gives what whole frames give.
  for (size_t off = 0; off < in.size(); off += 700) s.push_audio(in.data() + off, std::min<size_t>(700, in.size() - off));
  std::vector<float> a;
  s.pull_audio(a);
  EXPECT_EQ(a.size(), 1920u * 6);  // the first frame is stepped twice, so 6 frames in -> 6 out
  EXPECT_EQ(s.timings().frames, 6);
  s.reset();
  s.push_audio(in.data(), in.size());
  std::vector<float> b;
  s.pull_audio(b);
  EXPECT_EQ(a, b);
}

namespace {

// A complete model directory: tiny LM and Mimi weights under the reference's names, a text
// tokenizer with enough pieces, and a config.json naming them.
std::string tiny_model_dir() {
  static const std::string dir = [] {
    // Per process: ctest runs the tests of this file in parallel processes.
    const std::string d = tmp("model_dir_" + std::to_string(getpid()));
    EXPECT_EQ(testutil::sh("rm -rf " + d + " && mkdir -p " + d), 0);
    auto be = make_backend({"cpu", 1});
    RecordingSource lm_src(1), mimi_src(2);
    LmModel::load(lm_src, tiny_lm_config(), be);
    const char* mimi_cfg = R"({"seanet": {"dimension": 32, "n_filters": 4, "ratios": [8, 6, 5, 4]},
      "transformer": {"d_model": 32, "num_heads": 4, "num_layers": 2, "context": 12, "layer_scale": 0.01,
                      "dim_feedforward": 64}, "quantizer": {"dimension": 16, "n_q": 8, "bins": 2048}})";
    MimiModel::load(mimi_src, parse_mimi_config(mimi_cfg, "t"), be);
    write_safetensors(d + "/lm.safetensors", lm_src.recorded());
    write_safetensors(d + "/codec.safetensors", mimi_src.recorded());
    // A tokenizer with >= 128 pieces (the tiny LM's text vocabulary).
    std::ofstream corpus(d + "/corpus.txt");
    std::mt19937 g(1);
    for (int i = 0; i < 4000; ++i) {
      for (int w = 0; w < 8; ++w) {
        const int len = 2 + g() % 6;
        for (int c = 0; c < len; ++c) corpus << static_cast<char>('a' + g() % 26);
        corpus << ' ';
      }
      corpus << '\n';
    }
    corpus.close();
    EXPECT_EQ(testutil::sh("spm_train --input=" + d + "/corpus.txt --model_prefix=" + d +
                           "/spm --vocab_size=200 --model_type=unigram --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=3 "
                           "--minloglevel=2 >/dev/null 2>&1"),
              0);
    std::ofstream cfg(d + "/config.json");
    cfg << R"({"moshi_name": "lm.safetensors", "mimi_name": "codec.safetensors", "tokenizer_name": "spm.model",
      "dim": 64, "text_card": 128, "existing_text_padding_id": 3, "n_q": 16, "dep_q": 8, "card": 2048,
      "num_heads": 4, "num_layers": 2, "hidden_scale": 4.125, "causal": true, "context": 50,
      "gating": "silu", "norm": "rms_norm_f32", "positional_embedding": "rope", "depformer_dim": 32,
      "depformer_dim_feedforward": 132, "depformer_num_heads": 2, "depformer_num_layers": 2,
      "depformer_multi_linear": true, "depformer_pos_emb": "none", "depformer_weights_per_step": true,
      "depformer_gating": "silu", "delays": [0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1],
      "lm_gen_config": {"temp": 0.6, "temp_text": 0.5, "top_k": 100, "top_k_text": 10},
      "mimi_config": )"
        << mimi_cfg << "}";
    return d;
  }();
  return dir;
}

}  // namespace

TEST(Run, ModelDirectoryLoadsThroughTheCheckpointPath) {
  const std::string dir = tiny_model_dir();
  ASSERT_TRUE(std::ifstream(dir + "/spm.model").good()) << "spm_train failed";
  Model m = Model::load(dir);
  EXPECT_FALSE(m.synthetic());
  EXPECT_FLOAT_EQ(m.default_sampling().temp, 0.6f);  // from lm_gen_config
  EXPECT_EQ(m.default_sampling().top_k_text, 10);
  const std::string out = tmp("dir.wav"), txt = tmp("dir.txt");
  auto r = run_cli("run --model " + dir + " --input " + stereo_input() + " --output " + out + " --text " + txt +
                   " --after 0.3");
  ASSERT_EQ(r.status, 0) << r.err;
  // Real tokenizer: the transcript is pieces of the tokenizer's vocabulary, no placeholder ids.
  EXPECT_EQ(slurp(txt).find('<'), std::string::npos);
}

TEST(Run, BadInputGivesOneErrorLine) {
  const std::string in = stereo_input(), out = tmp("never.wav");
  const std::string base = " --model synthetic:tiny --input " + in + " --output " + out;
  expect_one_line_error(run_cli("run --model synthetic:tiny --input /nonexistent.wav --output " + out), "not found");
  {
    std::ofstream(tmp("text.wav")) << "not audio";
  }
  expect_one_line_error(run_cli("run --model synthetic:tiny --input " + tmp("text.wav") + " --output " + out),
                        "cannot read audio file");
  write_wav(tmp("empty.wav"), nullptr, 0, 24000);
  expect_one_line_error(run_cli("run --model synthetic:tiny --input " + tmp("empty.wav") + " --output " + out),
                        "no audio");
  expect_one_line_error(run_cli("run" + base + " --after -1"), "--after");
  expect_one_line_error(run_cli("run" + base + " --temp -0.5"), "--temp");
  expect_one_line_error(run_cli("run" + base + " --seed banana"), "--seed");
  expect_one_line_error(run_cli("run" + base + " --dtype q4"), "--dtype");
  expect_one_line_error(run_cli("run" + base + " --frobnicate"), "unknown option");
  expect_one_line_error(run_cli("run --model synthetic:huge --input " + in + " --output " + out), "synthetic");
  expect_one_line_error(run_cli("run --input " + in), "--output");
  // A model directory missing a file, and one with the wrong tokenizer.
  const std::string dir = tiny_model_dir(), broken = tmp("broken_dir_" + std::to_string(getpid()));
  ASSERT_EQ(testutil::sh("rm -rf " + broken + " && cp -r " + dir + " " + broken + " && rm " + broken + "/codec.safetensors"), 0);
  expect_one_line_error(run_cli("run --model " + broken + " --input " + in + " --output " + out),
                        "missing codec.safetensors");
  ASSERT_EQ(testutil::sh("cp -r " + dir + "/codec.safetensors " + broken + "/ && spm_train --input=" + broken +
                         "/corpus.txt --model_prefix=" + broken + "/spm --vocab_size=50 --minloglevel=2 >/dev/null 2>&1"),
            0);
  expect_one_line_error(run_cli("run --model " + broken + " --input " + in + " --output " + out), "wrong tokenizer");
  // A repo id that is not cached, offline.
  const std::string cache = tmp("empty_cache");
  expect_one_line_error(
      run_cli("run --offline --model kyutai/moshiko-pytorch-bf16 --input " + in + " --output " + out,
              "HF_HUB_CACHE=" + cache),
      "--model");
  // Too little memory for the model.
  expect_one_line_error(run_cli("run" + base + " --memory-limit 0.1"), "needs about");
  EXPECT_FALSE(std::ifstream(out).good());  // nothing written on failure
}
