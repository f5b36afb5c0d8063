#include "moshi/lm.h"

#include <algorithm>

#include "moshi/system.h"

#include "core/error.h"
#include "lm/lm_gen.h"
#include "weights/weight_source.h"

namespace moshi {

struct Lm::Impl {
  std::shared_ptr<const LmModel> model;
  std::string source;
};

Lm Lm::load(const std::string& spec, const LmOptions& opts) {
  auto backend = make_backend(BackendOptions{opts.device, opts.threads});
  auto impl = std::make_shared<Impl>();
  LmLoadOptions lo;
  lo.weights_dtype = opts.weights_dtype;
  const std::string kSynth = "synthetic:";
  if (spec.compare(0, kSynth.size(), kSynth) == 0) {
    const std::string which = spec.substr(kSynth.size());
    LmConfig cfg;
    if (which == "moshi-7b") {
      cfg = moshi_7b_config();
      if (lo.weights_dtype == "auto") lo.weights_dtype = "bf16";  // as released; f32 would need 31 GB
    } else if (which == "tiny") {
      cfg = tiny_lm_config();
    } else {
      fail("unknown synthetic model '", spec, "' (synthetic:moshi-7b, synthetic:tiny)");
    }
    SyntheticSource src(opts.seed);
    impl->model = LmModel::load(src, cfg, backend, lo);
    impl->source = spec + " (seeded random weights, seed " + std::to_string(opts.seed) + ")";
  } else {
    LmConfig cfg = opts.config_json.empty() ? moshi_7b_config() : parse_lm_config(opts.config_json, "LM config");
    SafetensorsSource src(SafetensorsFile::open(spec));
    impl->model = LmModel::load(src, cfg, backend, lo);
    impl->source = spec;
  }
  Lm lm;
  lm.impl_ = impl;
  return lm;
}

int Lm::num_codebooks() const { return impl_->model->config().num_codebooks(); }
int Lm::dep_q() const { return impl_->model->config().dep_q; }
int Lm::user_codebooks() const { return impl_->model->config().n_q - impl_->model->config().dep_q; }
int Lm::card() const { return impl_->model->config().card; }
int Lm::text_card() const { return impl_->model->config().text_card; }
int Lm::max_delay() const { return impl_->model->config().max_delay(); }
int Lm::text_padding_id() const { return impl_->model->config().existing_text_padding_id; }
int Lm::text_end_padding_id() const { return impl_->model->config().existing_text_end_padding_id; }
double Lm::weight_bytes_per_step() const { return impl_->model->weight_bytes_per_step(); }
double Lm::kv_bytes_per_position() const { return impl_->model->kv_bytes_per_position(); }
int Lm::context() const { return impl_->model->config().temporal.context; }
double Lm::measure_read_bandwidth_gbps() const {
  Backend& be = impl_->model->backend();
  if (be.device() == Device::CPU) return moshi::measure_read_bandwidth_gbps(std::max(1, be.threads()));
  return be.measure_read_bandwidth_gbps();
}
std::string Lm::describe() const {
  const Backend& be = impl_->model->backend();
  return impl_->source + " on " + be.name() + " (" + std::to_string(be.threads()) + " thread" +
         (be.threads() == 1 ? "" : "s") + ")";
}

struct LmGenerator::State {
  std::shared_ptr<const Lm::Impl> impl;
  std::unique_ptr<LmGen> gen;
};

LmGenerator::LmGenerator(std::unique_ptr<State> s) : s_(std::move(s)) {}
LmGenerator::~LmGenerator() = default;
LmGenerator::LmGenerator(LmGenerator&&) noexcept = default;
LmGenerator& LmGenerator::operator=(LmGenerator&&) noexcept = default;

LmGenerator Lm::generator(int batch, const SamplingOptions& so, uint64_t seed) const {
  MOSHI_CHECK(batch >= 1, "generator: batch must be positive");
  MOSHI_CHECK(so.temp >= 0 && so.temp_text >= 0, "sampling temperatures must be >= 0");
  GenParams gp;
  gp.seed = seed;
  gp.text = SamplingParams{!so.greedy, so.temp_text, so.top_k_text};
  gp.audio = SamplingParams{!so.greedy, so.temp, so.top_k};
  auto s = std::make_unique<LmGenerator::State>();
  s->impl = impl_;
  s->gen = std::make_unique<LmGen>(impl_->model, batch, gp);
  return LmGenerator(std::move(s));
}

bool LmGenerator::step(const std::vector<int64_t>& user, std::vector<int64_t>* out, std::vector<uint8_t>* ready,
                       std::vector<float>* text_logits) {
  s_->gen->step(user, s_->gen->user_codebooks(), *out, *ready, text_logits);
  for (uint8_t r : *ready)
    if (r) return true;
  return false;
}

void LmGenerator::reset() {
  for (int b = 0; b < s_->gen->batch(); ++b) s_->gen->reset(b);
}
void LmGenerator::reset(int stream) { s_->gen->reset(stream); }
void LmGenerator::skip_context(int64_t steps) { s_->gen->skip_context(steps); }
int LmGenerator::batch() const { return s_->gen->batch(); }
LmStepTimings LmGenerator::last_timings() const {
  const StepTimings& t = s_->gen->timings();
  return LmStepTimings{t.temporal_ms, t.depformer_ms, t.total_ms, t.issue_ms};
}

}  // namespace moshi
