// The LM: golden parity on every lm case, the reference's own unit test with its criterion,
// sampling, streaming state, and configuration rules.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "core/error.h"
#include "lm/lm_gen.h"
#include "moshi/verify.h"
#include "runtime/cpu/cpu_backend.h"
#include "test_util.h"
#include "weights/weight_source.h"

using namespace moshi;

TEST(LmGolden, EveryLmCasePasses) {
  if (!testutil::have_golden()) GTEST_SKIP() << "no golden directory at " << testutil::golden_dir();
  const auto cases = testutil::golden_cases("lm");
  ASSERT_FALSE(cases.empty()) << "golden directory has no lm case";
  for (const auto& dir : cases) testutil::expect_case_passes(dir);
}

namespace {

// Per-codebook mean cross-entropy over [B, K, T] positions (masked ones count as 0), as the
// reference's moshi.utils.utils.cross_entropy + mean(dim=(0, 2)).
std::vector<double> mean_ce(const float* logits, const int64_t* targets, const uint8_t* mask, int B, int K, int T,
                            int V) {
  std::vector<double> out(K, 0.0);
  for (int b = 0; b < B; ++b)
    for (int k = 0; k < K; ++k)
      for (int t = 0; t < T; ++t) {
        const size_t i = (static_cast<size_t>(b) * K + k) * T + t;
        if (!mask[i]) continue;
        const float* l = logits + i * V;
        double mx = -INFINITY, s = 0;
        for (int v = 0; v < V; ++v) mx = std::max(mx, static_cast<double>(l[v]));
        for (int v = 0; v < V; ++v) s += std::exp(l[v] - mx);
        out[k] += (mx + std::log(s)) - l[targets[i]];
      }
  for (double& v : out) v /= static_cast<double>(B) * T;
  return out;
}

}  // namespace

TEST(LmGolden, UpstreamUnitTestWithItsCriterion) {
  const std::string dir = testutil::golden_dir() + "/upstream_lm_test";
  if (!testutil::have_golden()) GTEST_SKIP() << "no golden directory at " << testutil::golden_dir();
  // The config is not stored with the assets; shared/golden/README.md gives it.
  const LmConfig cfg = parse_lm_config(R"({"delays": [0, 1, 2, 4], "n_q": 3, "dep_q": 3, "card": 32,
      "text_card": 48, "dim": 16, "num_layers": 2, "num_heads": 1, "hidden_scale": 1, "depformer_dim": 16,
      "depformer_multi_linear": true, "depformer_weights_per_step": true,
      "depformer_weights_per_step_schedule": [0, 1, 1], "depformer_low_rank_embeddings": 8,
      "depformer_num_heads": 1, "depformer_gating": "silu", "context": 4})",
                                       "upstream_lm_test");
  SafetensorsSource src(SafetensorsFile::open(dir + "/test_lm_model.safetensors"));
  auto model = LmModel::load(src, cfg, make_backend({"cpu", 2}));
  const Tensor codes = SafetensorsFile::open(dir + "/test_lm_codes.safetensors")->get_i64("codes");
  auto ref = SafetensorsFile::open(dir + "/test_lm_out.safetensors");
  const int B = static_cast<int>(codes.dim(0)), K = static_cast<int>(codes.dim(1)), T = static_cast<int>(codes.dim(2));
  ASSERT_EQ(K, 4);
  auto out = model->forward(std::vector<int64_t>(codes.i64(), codes.i64() + codes.numel()), B, T);
  // Masks exactly.
  const Tensor mask = ref->get_i64("mask"), text_mask = ref->get_i64("text_mask");
  for (int64_t i = 0; i < mask.numel(); ++i) ASSERT_EQ(out.mask[i], mask.i64()[i]) << i;
  for (int64_t i = 0; i < text_mask.numel(); ++i) ASSERT_EQ(out.text_mask[i], text_mask.i64()[i]) << i;
  // Cross-entropy of both logits against the codes, relative difference <= 1e-6 per codebook.
  std::vector<int64_t> audio_targets, text_targets;
  for (int b = 0; b < B; ++b)
    for (int k = 0; k < K; ++k)
      for (int t = 0; t < T; ++t) (k == 0 ? text_targets : audio_targets).push_back(codes.i64()[(b * K + k) * T + t]);
  const Tensor ref_logits = ref->get_f32("logits"), ref_text = ref->get_f32("text_logits");
  auto check = [&](const std::vector<float>& got, const Tensor& want, const std::vector<int64_t>& tgt,
                   const std::vector<uint8_t>& m, int KK, int V, const char* what) {
    const auto a = mean_ce(got.data(), tgt.data(), m.data(), B, KK, T, V);
    const auto b = mean_ce(want.f32(), tgt.data(), m.data(), B, KK, T, V);
    for (int k = 0; k < KK; ++k) {
      const double delta = std::fabs(a[k] - b[k]) / b[k];
      EXPECT_LE(delta, 1e-6) << what << " codebook " << k << ": ce " << a[k] << " vs " << b[k];
    }
  };
  check(out.logits, ref_logits, audio_targets, out.mask, 3, 32, "audio");
  check(out.text_logits, ref_text, text_targets, out.text_mask, 1, 48, "text");
}

namespace {
std::shared_ptr<const LmModel> tiny_model(int threads = 2) {
  SyntheticSource src(11);
  return LmModel::load(src, tiny_lm_config(), make_backend({"cpu", threads}));
}

std::vector<std::vector<int64_t>> run(LmGen& gen, int steps, int seed_user) {
  const int B = gen.batch(), nu = gen.user_codebooks();
  std::vector<std::vector<int64_t>> frames;
  std::vector<int64_t> user(static_cast<size_t>(B) * nu), out;
  std::vector<uint8_t> ready;
  for (int s = 0; s < steps; ++s) {
    for (size_t i = 0; i < user.size(); ++i) user[i] = (s * 131 + i * 17 + seed_user) % 2048;
    gen.step(user, nu, out, ready);
    frames.push_back(out);
  }
  return frames;
}
}  // namespace

TEST(LmGen, SeededSamplingReplaysAndDiffers) {
  auto m = tiny_model();
  GenParams p;
  p.seed = 7;
  LmGen a(m, 2, p), b(m, 2, p);
  const auto fa = run(a, 6, 0), fb = run(b, 6, 0);
  EXPECT_EQ(fa, fb);
  p.seed = 8;
  LmGen c(m, 2, p);
  EXPECT_NE(run(c, 6, 0), fa);
  // The first step returns nothing (delay 1), then whole frames.
  EXPECT_EQ(fa[0][0], -2);
  EXPECT_GE(fa[1][0], 0);
  // Reset replays a stream exactly, RNG included.
  a.reset(0);
  a.reset(1);
  EXPECT_EQ(run(a, 6, 0), fa);
  // Streams of a batch are independent of each other's inputs... except through their own.
  LmGen d(m, 2, p), e(m, 1, p);
  const auto fd = run(d, 4, 3);
  std::vector<int64_t> out;
  std::vector<uint8_t> ready;
  const int nu = e.user_codebooks();
  for (int s = 0; s < 4; ++s) {
    std::vector<int64_t> user(nu);
    for (int i = 0; i < nu; ++i) user[i] = (s * 131 + i * 17 + 3) % 2048;
    e.step(user, nu, out, ready);
    for (size_t k = 0; k < out.size(); ++k) EXPECT_EQ(out[k], fd[s][k]) << s;
  }
}

TEST(LmGen, UnlimitedContextStreamsManySteps) {
  // A config without "context" (the reference's None) keeps every step in view.
  LmConfig cfg = parse_lm_config(R"({"dim": 32, "num_heads": 2, "num_layers": 1, "hidden_scale": 2,
      "gating": "silu", "norm": "rms_norm_f32", "positional_embedding": "rope", "n_q": 2, "dep_q": 1,
      "card": 2048, "text_card": 20, "delays": [0, 1, 0], "depformer_dim": 16, "depformer_num_heads": 2})",
                                 "unlimited");
  ASSERT_EQ(cfg.temporal.context, 0);
  SyntheticSource src(2);
  auto m = LmModel::load(src, cfg, make_backend({"cpu", 1}));
  GenParams p;
  p.seed = 1;
  LmGen a(m, 1, p), b(m, 1, p);
  EXPECT_EQ(run(a, 40, 0), run(b, 40, 0));
}

TEST(LmGen, SkipContextMovesStreamsOnAndFailsLoudlyPastTheRing) {
  GenParams p;
  p.seed = 4;
  LmGen g(tiny_model(), 2, p);
  g.skip_context(60);  // past the tiny model's 50-step context: the window is full from here
  EXPECT_EQ(g.offset(0), 60);
  EXPECT_EQ(g.offset(1), 60);
  const auto frames = run(g, 4, 0);
  // The skipped steps generated nothing: frames come once the delays have passed over real
  // steps, and a returned frame is whole.
  EXPECT_EQ(frames[0][0], -2);
  EXPECT_GE(frames.back()[0], 0);
  for (const auto& f : frames)
    for (size_t b = 0; b < 2; ++b) {
      const size_t G = f.size() / 2;
      const bool some = f[b * G] >= 0;
      for (size_t k = 0; k < G; ++k) EXPECT_EQ(f[b * G + k] >= 0, some);
    }
  EXPECT_EQ(g.offset(1), 64);
  EXPECT_THROW(g.skip_context(-1), Error);
  // Without a context limit the ring holds 4096 steps; a stream skipped past it cannot attend
  // over its window, and says so rather than forgetting silently.
  LmConfig cfg = parse_lm_config(R"({"dim": 32, "num_heads": 2, "num_layers": 1, "hidden_scale": 2,
      "gating": "silu", "norm": "rms_norm_f32", "positional_embedding": "rope", "n_q": 2, "dep_q": 1,
      "card": 2048, "text_card": 20, "delays": [0, 1, 0], "depformer_dim": 16, "depformer_num_heads": 2})",
                                 "unlimited");
  SyntheticSource src(2);
  LmGen u(LmModel::load(src, cfg, make_backend({"cpu", 1})), 1, p);
  u.skip_context(5000);
  EXPECT_THROW(run(u, 1, 0), Error);
}

TEST(BenchLm, BatchAndContextListsGiveOneRunEach) {
  auto r = testutil::run_cli("bench lm --model synthetic:tiny --batch 1,2 --context fresh,full --steps 1 --warmup 0 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  size_t runs = 0;
  for (size_t at = r.out.find("\"batch\":"); at != std::string::npos; at = r.out.find("\"batch\":", at + 1)) ++runs;
  EXPECT_EQ(runs, 4u) << r.out;
  EXPECT_NE(r.out.find("\"context\":\"full\",\"context_steps\":50"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"issue_ms\":{\"median\""), std::string::npos) << r.out;
  for (const char* bad : {"--batch 1,x", "--batch 0", "--batch ,", "--context half", "--context fresh,"}) {
    r = testutil::run_cli(std::string("bench lm --model synthetic:tiny --steps 1 ") + bad);
    EXPECT_NE(r.status, 0) << bad;
    EXPECT_NE(r.err.find("error:"), std::string::npos) << bad << ": " << r.err;
    EXPECT_EQ(r.out.find("\"bench\""), std::string::npos) << bad;
  }
}

TEST(LmGen, ThreadCountsGiveTheSameTokens) {
  GenParams p;
  p.seed = 3;
  LmGen a(tiny_model(1), 1, p), b(tiny_model(2), 1, p);
  EXPECT_EQ(run(a, 5, 1), run(b, 5, 1));
}

TEST(LmGen, RejectsBadUserTokens) {
  LmGen g(tiny_model(), 1, GenParams{});
  std::vector<int64_t> out;
  std::vector<uint8_t> ready;
  std::vector<int64_t> user(g.user_codebooks(), 2048);  // card itself is not a user token
  EXPECT_THROW(g.step(user, g.user_codebooks(), out, ready), Error);
  std::vector<int64_t> few(g.user_codebooks() - 1, 0);
  EXPECT_THROW(g.step(few, g.user_codebooks() - 1, out, ready), Error);
}

TEST(Sampler, GreedyTopKAndDistribution) {
  const float l[5] = {1.f, 3.f, 3.f, -1.f, 0.f};
  SamplingParams greedy{false, 1.f, 0};
  EXPECT_EQ(sample_token(l, 5, greedy, 1, 0, 0, 0), 1);  // ties: lowest index
  SamplingParams top1{true, 1.f, 1};
  for (int s = 0; s < 20; ++s) EXPECT_EQ(sample_token(l, 5, top1, 9, 0, s, 0), 1);
  // With temperature 1 over the whole vocabulary, frequencies follow softmax(l).
  SamplingParams all{true, 1.f, 0};
  std::map<int64_t, int> count;
  const int n = 40000;
  for (int s = 0; s < n; ++s) ++count[sample_token(l, 5, all, 5, 0, s, 0)];
  double z = 0;
  for (float v : l) z += std::exp(v);
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(count[i] / double(n), std::exp(l[i]) / z, 0.01) << i;
  // Top-2 never leaves the two best.
  SamplingParams top2{true, 1.f, 2};
  for (int s = 0; s < 200; ++s) {
    const int64_t t = sample_token(l, 5, top2, 2, 0, s, 0);
    EXPECT_TRUE(t == 1 || t == 2);
  }
}

TEST(LmConfig, ReferenceRules) {
  const LmConfig m = moshi_7b_config();
  EXPECT_EQ(m.temporal.dim_feedforward, 16896);
  EXPECT_EQ(m.temporal.gated_hidden(), 11264);
  EXPECT_EQ(m.depformer.gated_hidden(), 2816);
  EXPECT_EQ(m.depformer.weights_per_step, 8);
  EXPECT_EQ(m.max_delay(), 1);
  EXPECT_FALSE(m.depformer.layer_scale);
  EXPECT_EQ(m.depformer.pos_emb, PosEmb::None);
  // ff == 4·dim takes the 21/8 rule; the depformer inherits what it is not given.
  const LmConfig c = parse_lm_config(R"({"dim": 64, "num_heads": 4, "num_layers": 3, "hidden_scale": 4,
      "gating": "silu", "n_q": 2, "dep_q": 1, "delays": [0, 0, 0], "depformer_dim": 32,
      "depformer_num_heads": 2})",
                                     "t");
  EXPECT_EQ(c.temporal.gated_hidden(), 21 * 64 / 8);
  EXPECT_EQ(c.depformer.num_layers, 3);
  EXPECT_TRUE(c.depformer.gated);
  EXPECT_EQ(c.temporal.pos_emb, PosEmb::Sin);
  EXPECT_THROW(parse_lm_config(R"({"delays": [0], "n_q": 2, "dep_q": 1})", "t"), Error);
  EXPECT_THROW(parse_lm_config(R"({"cross_attention": true})", "t"), Error);
  EXPECT_THROW(parse_lm_config(R"({"norm": "batch_norm"})", "t"), Error);
}

TEST(LmModel, Bf16KvCacheStaysCloseToF32) {
  // The bf16 cache rounds keys and values once when written; text logits over a few steps must
  // stay close to the f32 cache's, and differ from them (the narrow path really ran).
  SyntheticSource src(11);
  LmLoadOptions narrow;
  narrow.kv_dtype = "bf16";
  auto wide_m = LmModel::load(src, tiny_lm_config(), make_backend({"cpu", 1}));
  auto narrow_m = LmModel::load(src, tiny_lm_config(), make_backend({"cpu", 1}), narrow);
  EXPECT_EQ(wide_m->kv_dtype(), DType::F32);  // "auto" on the CPU keeps f32
  ASSERT_EQ(narrow_m->kv_dtype(), DType::BF16);
  auto sw = wide_m->new_state(2), sn = narrow_m->new_state(2);
  const auto init = wide_m->initial_tokens();
  std::vector<int64_t> tokens;
  for (int b = 0; b < 2; ++b) tokens.insert(tokens.end(), init.begin(), init.end());
  double worst = 0, scale = 0;
  for (int s = 0; s < 6; ++s) {
    std::vector<float> lw, ln;
    wide_m->temporal_step(*sw, tokens, lw);
    narrow_m->temporal_step(*sn, tokens, ln);
    ASSERT_EQ(lw.size(), ln.size());
    for (size_t i = 0; i < lw.size(); ++i) {
      worst = std::max(worst, static_cast<double>(std::fabs(lw[i] - ln[i])));
      scale = std::max(scale, static_cast<double>(std::fabs(lw[i])));
    }
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = (tokens[i] * 7 + s + 3) % 20;  // any in-range tokens
  }
  EXPECT_GT(worst, 0.0);
  EXPECT_LE(worst, 2e-2 * std::max(scale, 1.0)) << "scale " << scale;
  LmLoadOptions bad;
  bad.kv_dtype = "f16";
  EXPECT_THROW(LmModel::load(src, tiny_lm_config(), make_backend({"cpu", 1}), bad), Error);
}

namespace {
// The CPU backend taking the other order of a transformer's half-layer ops (each norm inside the
// product after it, each residual add inside the product before it: the CUDA backend's order
// at a few rows), through the ops' default compositions.
class FoldingCpu final : public CpuBackend {
 public:
  FoldingCpu() : CpuBackend(1) {}
  bool folds_norms(int64_t /*rows*/, bool /*layer_norm*/) const override { return true; }
};
}  // namespace

TEST(LmModel, FoldedNormOrderGivesTheSameLogits) {
  SyntheticSource src(11);
  auto plain = LmModel::load(src, tiny_lm_config(), make_backend({"cpu", 1}));
  auto folded = LmModel::load(src, tiny_lm_config(), std::make_shared<FoldingCpu>());
  const int B = 2, T = 5, K = plain->config().num_codebooks();
  std::vector<int64_t> codes(static_cast<size_t>(B) * K * T);
  for (size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<int64_t>((i * 7 + 3) % 20);
  const auto a = plain->forward(codes, B, T), b = folded->forward(codes, B, T);
  auto worst = [](const std::vector<float>& x, const std::vector<float>& y) {
    EXPECT_EQ(x.size(), y.size());
    double d = 0, scale = 0;
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (std::isnan(x[i]) || std::isnan(y[i])) {
        EXPECT_EQ(std::isnan(x[i]), std::isnan(y[i])) << i;
        continue;
      }
      d = std::max(d, static_cast<double>(std::fabs(x[i] - y[i])));
      scale = std::max(scale, static_cast<double>(std::fabs(x[i])));
    }
    EXPECT_GT(scale, 0.0);
    return d / std::max(scale, 1e-30);
  };
  EXPECT_LE(worst(a.text_logits, b.text_logits), 1e-5);
  EXPECT_LE(worst(a.logits, b.logits), 1e-5);
}
