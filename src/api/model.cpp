#include "moshi/model.h"

#include <sys/stat.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "api/model_files.h"
#include "api/model_impl.h"
#include "codec/mimi_model.h"
#include "core/error.h"
#include "lm/lm_gen.h"
#include "moshi/text.h"
#include "weights/weight_source.h"

namespace moshi {

using json = nlohmann::json;

namespace {

// A Mimi with the released layout at toy width whose codebooks (2048 entries, 8 levels) match
// the tiny LM, for tests and demos.
const char* kTinyMimi = R"({"seanet": {"dimension": 32, "n_filters": 4, "ratios": [8, 6, 5, 4]},
  "transformer": {"d_model": 32, "num_heads": 4, "num_layers": 2, "context": 12, "layer_scale": 0.01,
                  "dim_feedforward": 64},
  "quantizer": {"dimension": 16, "n_q": 8, "bins": 2048}})";

double file_gb(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 ? st.st_size / 1e9 : 0.0;
}

double available_gb() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  double kb = 0;
  while (f >> key >> kb) {
    if (key == "MemAvailable:") return kb / 1e6;
    f.ignore(1 << 10, '\n');
  }
  return 0;
}

// Bytes of KV cache one stream holds at the full temporal context, `bytes` per value.
double kv_cache_gb(const LmConfig& c, double bytes) {
  const double ctx = c.temporal.context > 0 ? c.temporal.context + 1 : 3000;
  const double kv_dim = static_cast<double>(c.dim) / c.temporal.kv_repeat;
  return c.temporal.num_layers * ctx * kv_dim * 2 * bytes / 1e9;
}

double lm_weights_gb(const LmConfig& c, double bytes_per_value) {
  const double D = c.dim, Dd = c.depformer_dim;
  const double ff = 2.0 * c.temporal.gated_hidden() * D + c.temporal.gated_hidden() * D;
  const double layer = 4 * D * D + (c.temporal.gated ? ff : 2 * c.temporal.dim_feedforward * D);
  double p = c.temporal.num_layers * layer + (c.n_q * (c.card + 1.0) + c.text_card + 1) * D + c.text_card_out * D;
  const double dff = c.depformer.gated ? 3.0 * c.depformer.gated_hidden() * Dd : 2.0 * c.depformer.dim_feedforward * Dd;
  p += c.dep_q * (Dd * D + c.depformer.num_layers * (4 * Dd * Dd + dff) + c.card * Dd + (c.card + 1) * Dd);
  return p * bytes_per_value / 1e9;
}

}  // namespace


Model Model::load(const std::string& spec, const ModelOptions& opts) {
  auto impl = std::make_shared<Impl>();
  auto backend = make_backend(BackendOptions{opts.device, opts.threads});
  LmLoadOptions lo;
  lo.weights_dtype = opts.weights_dtype;
  LmConfig lc;
  MimiConfig mc;
  std::unique_ptr<WeightSource> lm_src, mimi_src;
  const std::string kSynth = "synthetic:";
  double weights_gb = 0;
  if (spec.compare(0, kSynth.size(), kSynth) == 0) {
    const std::string which = spec.substr(kSynth.size());
    if (which == "moshi-7b") {
      lc = moshi_7b_config();
      if (lo.weights_dtype == "auto") lo.weights_dtype = "bf16";
      weights_gb = lm_weights_gb(lc, lo.weights_dtype == "f32" ? 4 : 2) + 0.8;
    } else if (which == "tiny") {
      lc = tiny_lm_config();
      mc = parse_mimi_config(kTinyMimi, "tiny Mimi");
      weights_gb = lm_weights_gb(lc, 4) + 0.01;
    } else {
      fail("unknown synthetic model '", spec, "' (synthetic:moshi-7b, synthetic:tiny)");
    }
    lm_src = std::make_unique<SyntheticSource>(opts.seed);
    mimi_src = std::make_unique<SyntheticSource>(opts.seed + 1);
    impl->synthetic = true;
    impl->source = spec + " (seeded random weights: nonsense speech)";
  } else {
    ModelFiles files = resolve_model_files(spec, opts);
    lc = files.config_json.empty() ? moshi_7b_config() : parse_lm_config(files.config_json, files.source + "/config.json");
    if (!files.config_json.empty()) {
      json j = json::parse(files.config_json, nullptr, false);
      // A mimi_config object (moshi-rt extension, as in golden cases) describes a non-standard codec.
      if (j.contains("mimi_config")) mc = parse_mimi_config(files.config_json, files.source + "/config.json");
      if (j.contains("lm_gen_config") && j["lm_gen_config"].is_object()) {
        const json& g = j["lm_gen_config"];
        impl->sampling.temp = g.value("temp", impl->sampling.temp);
        impl->sampling.temp_text = g.value("temp_text", impl->sampling.temp_text);
        impl->sampling.top_k = g.value("top_k", impl->sampling.top_k);
        impl->sampling.top_k_text = g.value("top_k_text", impl->sampling.top_k_text);
      }
    }
    const double lm_file = file_gb(files.lm_weights);
    weights_gb = (lo.weights_dtype == "f32" ? 2 : 1) * lm_file + 2 * file_gb(files.mimi_weights);
    impl->tokenizer = TextTokenizer::load(files.tokenizer);
    MOSHI_CHECK(impl->tokenizer->vocab_size() >= lc.text_card, files.tokenizer, ": ", impl->tokenizer->vocab_size(),
                " pieces, the model's text vocabulary has ", lc.text_card, " (wrong tokenizer?)");
    lm_src = std::make_unique<SafetensorsSource>(SafetensorsFile::open(files.lm_weights));
    mimi_src = std::make_unique<SafetensorsSource>(SafetensorsFile::open(files.mimi_weights));
    impl->source = files.source;
  }
  // Refuse early and clearly rather than die of memory half way through loading.
  // The KV cache's type follows LmModel::load's rule (bf16 with bf16 weights on a GPU).
  const bool kv_bf16 = lo.kv_dtype == "bf16" ||
                       (lo.kv_dtype == "auto" && lo.weights_dtype == "bf16" && backend->device() == Device::CUDA);
  const double kv_gb = kv_cache_gb(lc, kv_bf16 ? 2 : 4);
  impl->estimate_gb = weights_gb + kv_gb + 0.3;
  const double limit = opts.memory_limit_gb > 0 ? opts.memory_limit_gb : available_gb();
  if (limit > 0 && impl->estimate_gb > limit) {
    char msg[256];
    std::snprintf(msg, sizeof msg, "%.1f GB (weights %.1f GB, KV cache %.1f GB)", impl->estimate_gb, weights_gb,
                  kv_gb);
    fail(spec, " needs about ", msg, " but only ", static_cast<int>(limit * 10) / 10.0,
         " GB are available; free memory, use a smaller model, or raise --memory-limit");
  }
  impl->lm = LmModel::load(*lm_src, lc, backend, lo);
  impl->mimi = MimiModel::load(*mimi_src, mc, backend);
  const int need = std::max(lc.dep_q, lc.n_q - lc.dep_q);
  MOSHI_CHECK(need <= mc.quantizer.n_q, "the LM uses ", need, " audio codebooks, the Mimi has ", mc.quantizer.n_q);
  MOSHI_CHECK(mc.quantizer.bins == lc.card, "the LM's audio vocabulary (", lc.card, ") does not match the Mimi's ",
              mc.quantizer.bins, " codebook entries");
  Model m;
  m.impl_ = impl;
  return m;
}

int Model::sample_rate() const { return impl_->mimi->config().sample_rate; }
int Model::frame_size() const { return impl_->mimi->frame_size(); }
double Model::frame_rate() const { return impl_->mimi->config().frame_rate; }
bool Model::synthetic() const { return impl_->synthetic; }
double Model::estimated_gb() const { return impl_->estimate_gb; }
SamplingOptions Model::default_sampling() const { return impl_->sampling; }
std::string Model::describe() const {
  const Backend& be = impl_->lm->backend();
  return impl_->source + " on " + be.name() + " (" + std::to_string(be.threads()) + " thread" +
         (be.threads() == 1 ? "" : "s") + ")";
}

// ---- Session -------------------------------------------------------------------------------

struct Session::State {
  std::shared_ptr<const Model::Impl> m;
  GenParams params;
  std::unique_ptr<MimiModel::EncoderState> enc;
  std::unique_ptr<MimiModel::DecoderState> dec;
  std::unique_ptr<LmGen> gen;
  std::vector<float> pending, audio;
  std::vector<TextPiece> text;
  bool first = true;
  SessionTimings t;

  void start() {
    enc = m->mimi->new_encoder(1);
    dec = m->mimi->new_decoder(1);
    gen = std::make_unique<LmGen>(m->lm, 1, params);
    pending.clear();
    audio.clear();
    text.clear();
    first = true;
    t = SessionTimings{};
  }
  int run_frame(const float* frame);
};

namespace {
double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

int Session::State::run_frame(const float* frame) {
  const LmConfig& lc = m->lm->config();
  const int fs = m->mimi->frame_size(), nu = lc.n_q - lc.dep_q;
  const int K = std::max(lc.dep_q, nu);
  auto t0 = std::chrono::steady_clock::now();
  Tensor pcm = Tensor::zeros_f32({1, 1, fs});
  std::memcpy(pcm.f32(), frame, fs * sizeof(float));
  Tensor codes = Tensor::zeros(DType::I64, {1, K, 1});
  m->mimi->encode(*enc, pcm, nullptr, K, &codes);
  t.mimi_encode_ms += ms_since(t0);
  std::vector<int64_t> user(codes.i64(), codes.i64() + nu), out;
  std::vector<uint8_t> ready;
  // The reference's file loop steps the first frame twice: the first step's user tokens are
  // replaced by initial tokens, so the second makes the frame actually heard.
  const int steps = first ? 2 : 1;
  first = false;
  int produced = 0;
  for (int s = 0; s < steps; ++s) {
    gen->step(user, nu, out, ready);
    t.lm_temporal_ms += gen->timings().temporal_ms;
    t.lm_depformer_ms += gen->timings().depformer_ms;
    if (s + 1 < steps || !ready[0]) continue;
    const int64_t frame_index = t.frames;
    const int64_t tok = out[0];
    if (tok != lc.existing_text_padding_id && tok != lc.existing_text_end_padding_id) {
      TextPiece p;
      p.frame = frame_index;
      p.time_s = frame_index / m->mimi->config().frame_rate;
      p.token = tok;
      p.text = m->tokenizer ? m->tokenizer->token_text(tok, lc.existing_text_padding_id,
                                                       lc.existing_text_end_padding_id)
                            : " <" + std::to_string(tok) + ">";  // synthetic models have no tokenizer
      text.push_back(std::move(p));
    }
    if (lc.dep_q > 0) {
      t0 = std::chrono::steady_clock::now();
      Tensor ac = Tensor::zeros(DType::I64, {1, lc.dep_q, 1});
      for (int k = 0; k < lc.dep_q; ++k) ac.i64()[k] = out[1 + k];
      Tensor y = Tensor::zeros_f32({1, 1, fs});
      m->mimi->decode(*dec, ac, y);
      audio.insert(audio.end(), y.f32(), y.f32() + fs);
      t.mimi_decode_ms += ms_since(t0);
    }
    ++t.frames;
    ++produced;
  }
  return produced;
}

Session::Session(std::unique_ptr<State> s) : s_(std::move(s)) {}
Session::~Session() = default;
Session::Session(Session&&) noexcept = default;
Session& Session::operator=(Session&&) noexcept = default;

Session Model::session(const SessionOptions& opts) const {
  auto s = std::make_unique<Session::State>();
  s->m = impl_;
  SamplingOptions so = opts.sampling;
  MOSHI_CHECK(so.temp >= 0 && so.temp_text >= 0, "sampling temperatures must be >= 0");
  s->params.seed = opts.seed;
  s->params.text = SamplingParams{!so.greedy, so.temp_text, so.top_k_text};
  s->params.audio = SamplingParams{!so.greedy, so.temp, so.top_k};
  s->start();
  return Session(std::move(s));
}

int Session::push_audio(const float* pcm, size_t n) {
  s_->pending.insert(s_->pending.end(), pcm, pcm + n);
  const size_t fs = static_cast<size_t>(s_->m->mimi->frame_size());
  int produced = 0;
  size_t off = 0;
  for (; off + fs <= s_->pending.size(); off += fs) produced += s_->run_frame(s_->pending.data() + off);
  s_->pending.erase(s_->pending.begin(), s_->pending.begin() + off);
  return produced;
}

int Session::flush() {
  if (s_->pending.empty()) return 0;
  s_->pending.resize(s_->m->mimi->frame_size(), 0.f);
  const int n = s_->run_frame(s_->pending.data());
  s_->pending.clear();
  return n;
}

size_t Session::pull_audio(std::vector<float>& out) {
  const size_t n = s_->audio.size();
  out.insert(out.end(), s_->audio.begin(), s_->audio.end());
  s_->audio.clear();
  return n;
}

std::vector<TextPiece> Session::pull_text() {
  std::vector<TextPiece> t;
  t.swap(s_->text);
  return t;
}

void Session::reset() { s_->start(); }
const SessionTimings& Session::timings() const { return s_->t; }

}  // namespace moshi
