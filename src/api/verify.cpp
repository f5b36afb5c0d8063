// Runs golden case folders through the engine (see include/moshi/verify.h).
#include "moshi/verify.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "api/tolerances.h"
#include "codec/mimi_model.h"
#include "lm/lm_gen.h"
#include "core/error.h"
#include "weights/weight_source.h"

namespace moshi {

using json = nlohmann::json;

namespace {

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  MOSHI_CHECK(f.good(), path, ": cannot open");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Float comparison over the first `frames` along the last axis (all if frames < 0).
VerifyCheck compare_float(const std::string& name, const Tensor& got, const Tensor& ref, const Tolerance& tol,
                          int64_t frames = -1) {
  VerifyCheck c;
  c.tensor = name;
  std::ostringstream rule;
  rule << "max |diff| <= " << tol.max_abs;
  c.rule = rule.str();
  MOSHI_CHECK(got.shape() == ref.shape(), name, ": engine produced ", shape_str(got.shape()), ", reference is ",
              shape_str(ref.shape()));
  const int64_t last = ref.dim(-1), rows = ref.numel() / (last ? last : 1);
  const int64_t use = frames < 0 ? last : std::min(frames, last);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t t = 0; t < use; ++t) {
      const float a = got.f32()[r * last + t], b = ref.f32()[r * last + t];
      ++c.compared;
      if (std::isnan(a) || std::isnan(b)) {
        if (std::isnan(a) != std::isnan(b)) ++c.mismatches;
        continue;
      }
      const double d = std::fabs(static_cast<double>(a) - b);
      c.max_abs = std::max(c.max_abs, d);
      if (!(d <= tol.max_abs)) ++c.mismatches;
    }
  c.pass = c.mismatches == 0 && c.compared > 0;
  if (frames >= 0) c.note = "first " + std::to_string(use) + " of " + std::to_string(last) + " steps";
  return c;
}

// Integer comparison of [B, K, T] codes over the first `frames` steps.
VerifyCheck compare_codes(const std::string& name, const Tensor& got, const Tensor& ref, const Tolerance& tol,
                          int64_t frames = -1) {
  VerifyCheck c;
  c.tensor = name;
  std::ostringstream rule;
  rule << "equal in >= " << tol.min_agreement * 100 << "% of positions" << (tol.first_row_exact ? ", codebook 0 everywhere" : "");
  c.rule = rule.str();
  MOSHI_CHECK(got.shape() == ref.shape() && ref.ndim() == 3, name, ": engine produced ", shape_str(got.shape()),
              ", reference is ", shape_str(ref.shape()));
  const int64_t B = ref.dim(0), K = ref.dim(1), T = ref.dim(2), use = frames < 0 ? T : std::min(frames, T);
  int64_t row0_bad = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t t = 0; t < use; ++t) {
        const int64_t i = (b * K + k) * T + t;
        ++c.compared;
        if (got.i64()[i] != ref.i64()[i]) {
          ++c.mismatches;
          if (k == 0) ++row0_bad;
        }
      }
  const double agree = c.compared ? 1.0 - static_cast<double>(c.mismatches) / c.compared : 0.0;
  c.pass = c.compared > 0 && agree >= tol.min_agreement && (!tol.first_row_exact || row0_bad == 0);
  std::ostringstream note;
  note.precision(4);
  note << "agreement " << agree * 100 << "%";
  if (tol.first_row_exact) note << ", codebook-0 mismatches " << row0_bad;
  if (frames >= 0) note << ", first " << use << " of " << T << " frames";
  c.note = note.str();
  return c;
}

// Frames whose every transformer step sees the same keys in the streaming ring as under the
// plain window: before the first step whose normative call has dropped a key.
int64_t frames_equal_to_offline(int context, int group, int64_t frames) {
  if (context <= 0) return frames;
  for (int64_t p = 0; p < frames * group; ++p) {
    const int64_t group_end = (p / group) * group + group - 1;
    if (group_end > p && group_end - context + 1 > 0) return p / group;
  }
  return frames;
}

VerifyReport verify_mimi(const std::string& dir, const json& cfg, const VerifyOptions& opts) {
  VerifyReport rep;
  rep.kind = "mimi";
  MOSHI_CHECK(cfg.contains("mimi_config"), dir, "/config.json: no mimi_config");
  const MimiConfig mc = parse_mimi_config(cfg["mimi_config"].dump(), dir + "/config.json");
  auto backend = make_backend(BackendOptions{opts.device, opts.threads});
  SafetensorsSource wsrc(SafetensorsFile::open(dir + "/weights.safetensors"));
  auto model = MimiModel::load(wsrc, mc, backend);
  auto io = SafetensorsFile::open(dir + "/io.safetensors");

  const Tensor pcm = io->get_f32("pcm");
  MOSHI_CHECK(pcm.ndim() == 3 && pcm.dim(1) == 1, dir, ": pcm must be [B, 1, N], got ", shape_str(pcm.shape()));
  const int64_t B = pcm.dim(0), N = pcm.dim(2), fs = model->frame_size();
  MOSHI_CHECK(N % fs == 0, dir, ": pcm length ", N, " is not a multiple of the frame size ", fs);
  const int64_t T = N / fs, C = mc.seanet.dimension;
  int K = cfg.value("num_codebooks", 0);
  if (io->has("codes_stream")) K = static_cast<int>(io->info("codes_stream")->shape[1]);
  MOSHI_CHECK(K >= 1 && K <= mc.quantizer.n_q, dir, ": number of codebooks ", K, " is out of range");
  const int64_t n_eq = frames_equal_to_offline(mc.transformer.context, mc.resample_stride(), T);

  std::vector<std::pair<std::string, Tensor>> produced;
  if (io->has("codes_stream")) {
    auto enc = model->new_encoder(static_cast<int>(B), 1, false);
    Tensor codes = Tensor::zeros(DType::I64, {B, K, T});
    model->encode(*enc, pcm, nullptr, K, &codes);  // one frame per call, as the reference streamed it
    rep.checks.push_back(compare_codes("codes_stream", codes, io->get_i64("codes_stream"), tolerance(Stage::MimiCodes)));
    produced.emplace_back("codes_stream", codes);

    const Tensor ref_codes = io->get_i64("codes_stream");
    if (io->has("decoded_stream")) {
      auto dec = model->new_decoder(static_cast<int>(B), 1, false);
      Tensor out = Tensor::zeros_f32({B, 1, T * fs});
      model->decode(*dec, ref_codes, out);
      rep.checks.push_back(compare_float("decoded_stream", out, io->get_f32("decoded_stream"),
                                         tolerance(Stage::MimiDecoded)));
      produced.emplace_back("decoded_stream", out);
    }
  }
  if (io->has("latent") || io->has("codes_batch")) {
    auto enc = model->new_encoder(static_cast<int>(B), static_cast<int>(T), true);
    Tensor latent = Tensor::zeros_f32({B, C, T});
    Tensor codes = Tensor::zeros(DType::I64, {B, K, T});
    model->encode(*enc, pcm, &latent, K, &codes);
    if (io->has("latent")) {
      rep.checks.push_back(compare_float("latent", latent, io->get_f32("latent"), tolerance(Stage::MimiLatent), n_eq));
      produced.emplace_back("latent", latent);
    }
    if (io->has("codes_batch")) {
      rep.checks.push_back(
          compare_codes("codes_batch", codes, io->get_i64("codes_batch"), tolerance(Stage::MimiCodes), n_eq));
      produced.emplace_back("codes_batch", codes);
    }
  }
  if (io->has("decoded_batch") && io->has("codes_batch")) {
    auto dec = model->new_decoder(static_cast<int>(B), static_cast<int>(T), true);
    Tensor out = Tensor::zeros_f32({B, 1, T * fs});
    model->decode(*dec, io->get_i64("codes_batch"), out);
    VerifyCheck c = compare_float("decoded_batch", out, io->get_f32("decoded_batch"), tolerance(Stage::MimiDecoded),
                                  n_eq * fs);
    c.note = "first " + std::to_string(n_eq) + " of " + std::to_string(T) + " frames";
    rep.checks.push_back(c);
    produced.emplace_back("decoded_batch", out);
  }
  MOSHI_CHECK(!rep.checks.empty(), dir, "/io.safetensors: none of the mimi outputs (codes_stream, decoded_stream, "
                                        "latent, codes_batch, decoded_batch) is present");
  if (!opts.out_path.empty()) write_safetensors(opts.out_path, produced, {{"producer", "moshi-rt verify"}});
  return rep;
}

// Logits with the reference's NaN convention: a reference NaN (no prediction there) must meet a
// NaN or a masked position of ours; finite references must be matched within the tolerance.
VerifyCheck compare_logits(const std::string& name, const std::vector<float>& got, const std::vector<uint8_t>& mask,
                           int64_t row, const Tensor& ref, const Tolerance& tol) {
  VerifyCheck c;
  c.tensor = name;
  std::ostringstream rule;
  rule << "max |diff| <= " << tol.max_abs << ", NaN where the reference has none";
  c.rule = rule.str();
  MOSHI_CHECK(static_cast<int64_t>(got.size()) == ref.numel(), name, ": engine produced ", got.size(),
              " values, reference has ", ref.numel());
  int64_t nan_positions = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    const float a = got[i], b = ref.f32()[i];
    ++c.compared;
    if (std::isnan(b)) {
      ++nan_positions;
      if (!std::isnan(a) && mask[i / row]) ++c.mismatches;
      continue;
    }
    if (std::isnan(a)) {
      ++c.mismatches;
      continue;
    }
    const double d = std::fabs(static_cast<double>(a) - b);
    c.max_abs = std::max(c.max_abs, d);
    if (!(d <= tol.max_abs)) ++c.mismatches;
  }
  c.pass = c.mismatches == 0 && c.compared > 0;
  c.note = std::to_string(nan_positions / row) + " positions without a prediction";
  return c;
}

Tensor to_tensor(const std::vector<float>& v, const Shape& s) {
  Tensor t = Tensor::zeros_f32(s);
  std::memcpy(t.data(), v.data(), t.nbytes());
  return t;
}

VerifyReport verify_lm(const std::string& dir, const json& cfg, const VerifyOptions& opts) {
  VerifyReport rep;
  rep.kind = "lm";
  MOSHI_CHECK(cfg.contains("lm_config"), dir, "/config.json: no lm_config");
  const LmConfig lc = parse_lm_config(cfg["lm_config"].dump(), dir + "/config.json");
  const std::string sampling = cfg.value("sampling", "greedy");
  MOSHI_CHECK(sampling == "greedy", dir, ": sampling '", sampling, "' cannot be compared exactly (only greedy)");
  auto backend = make_backend(BackendOptions{opts.device, opts.threads});
  SafetensorsSource wsrc(SafetensorsFile::open(dir + "/weights.safetensors"));
  auto model = LmModel::load(wsrc, lc, backend);
  auto io = SafetensorsFile::open(dir + "/io.safetensors");
  std::vector<std::pair<std::string, Tensor>> produced;
  const Tolerance tok_tol = tolerance(Stage::LmTokens), logit_tol = tolerance(Stage::LmLogits);

  if (io->has("user_tokens")) {
    const Tensor user = io->get_i64("user_tokens");
    MOSHI_CHECK(user.ndim() == 3, dir, ": user_tokens must be [B, n_q - dep_q, T]");
    const int B = static_cast<int>(user.dim(0)), nu = static_cast<int>(user.dim(1));
    const int64_t T = user.dim(2), G = 1 + lc.dep_q, V = lc.text_card_out;
    GenParams gp;
    gp.text.use_sampling = gp.audio.use_sampling = false;
    LmGen gen(model, B, gp);
    Tensor tokens = Tensor::zeros(DType::I64, {B, G, T});
    std::vector<float> text_logits(static_cast<size_t>(B) * T * V);
    std::vector<int64_t> in(static_cast<size_t>(B) * nu), out;
    std::vector<uint8_t> ready;
    std::vector<float> tl;
    for (int64_t s = 0; s < T; ++s) {
      for (int b = 0; b < B; ++b)
        for (int k = 0; k < nu; ++k) in[static_cast<size_t>(b) * nu + k] = user.i64()[(b * nu + k) * T + s];
      gen.step(in, nu, out, ready, &tl);
      for (int b = 0; b < B; ++b) {
        for (int64_t k = 0; k < G; ++k) tokens.i64()[(b * G + k) * T + s] = ready[b] ? out[b * G + k] : -1;
        std::memcpy(&text_logits[(static_cast<size_t>(b) * T + s) * V], &tl[static_cast<size_t>(b) * V],
                    V * sizeof(float));
      }
    }
    if (io->has("gen_tokens")) {
      rep.checks.push_back(compare_codes("gen_tokens", tokens, io->get_i64("gen_tokens"), tok_tol));
      produced.emplace_back("gen_tokens", tokens);
    }
    if (io->has("gen_text_logits")) {
      Tensor t = to_tensor(text_logits, {B, 1, T, V});
      rep.checks.push_back(compare_float("gen_text_logits", t, io->get_f32("gen_text_logits"), logit_tol));
      produced.emplace_back("gen_text_logits", t);
    }
  }
  if (io->has("forward_codes")) {
    const Tensor codes = io->get_i64("forward_codes");
    MOSHI_CHECK(codes.ndim() == 3 && codes.dim(1) == lc.num_codebooks(), dir, ": forward_codes must be [B, ",
                lc.num_codebooks(), ", T]");
    const int B = static_cast<int>(codes.dim(0)), T = static_cast<int>(codes.dim(2));
    LmModel::ForwardOut f = model->forward(std::vector<int64_t>(codes.i64(), codes.i64() + codes.numel()), B, T);
    if (io->has("forward_logits")) {
      rep.checks.push_back(compare_logits("forward_logits", f.logits, f.mask, lc.card, io->get_f32("forward_logits"),
                                          logit_tol));
      for (size_t i = 0; i < f.mask.size(); ++i)  // what the engine writes: NaN where masked
        if (!f.mask[i]) std::fill_n(&f.logits[i * lc.card], lc.card, std::nanf(""));
      produced.emplace_back("forward_logits", to_tensor(f.logits, {B, lc.dep_q, T, lc.card}));
    }
    if (io->has("forward_text_logits")) {
      const int64_t V = lc.text_card_out;
      rep.checks.push_back(compare_logits("forward_text_logits", f.text_logits, f.text_mask, V,
                                          io->get_f32("forward_text_logits"), logit_tol));
      for (size_t i = 0; i < f.text_mask.size(); ++i)
        if (!f.text_mask[i]) std::fill_n(&f.text_logits[i * V], V, std::nanf(""));
      produced.emplace_back("forward_text_logits", to_tensor(f.text_logits, {B, 1, T, V}));
    }
  }
  MOSHI_CHECK(!rep.checks.empty(), dir, "/io.safetensors: none of the lm outputs (gen_tokens, gen_text_logits, "
                                        "forward_logits, forward_text_logits) is present");
  if (!opts.out_path.empty()) write_safetensors(opts.out_path, produced, {{"producer", "moshi-rt verify"}});
  return rep;
}

}  // namespace

VerifyReport verify_case(const std::string& case_dir, const VerifyOptions& opts) {
  const std::string cfg_path = case_dir + "/config.json";
  json cfg = json::parse(read_text(cfg_path), nullptr, false);
  MOSHI_CHECK(!cfg.is_discarded() && cfg.is_object(), cfg_path, ": not a JSON object");
  const std::string kind = cfg.value("kind", "");
  if (kind == "mimi") return verify_mimi(case_dir, cfg, opts);
  if (kind == "lm") return verify_lm(case_dir, cfg, opts);
  fail(cfg_path, ": case kind '", kind, "' is not supported (supported: mimi, lm)");
}

}  // namespace moshi
