#include "lm/lm_gen.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"

namespace moshi {

namespace {
using Clock = std::chrono::steady_clock;
double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}
constexpr int64_t kUngenerated = -2;
constexpr uint64_t kTextSite = 0;  // sampling sites: text, then 1 + k for codebook k
}  // namespace

LmGen::LmGen(std::shared_ptr<const LmModel> model, int batch, const GenParams& params)
    : model_(std::move(model)), params_(params), batch_(batch) {
  const LmConfig& c = model_->config();
  K_ = c.num_codebooks();
  CT_ = c.max_delay() + 2;
  state_ = model_->new_state(batch, 1);
  cache_.assign(static_cast<size_t>(batch) * K_ * CT_, kUngenerated);
  offsets_.assign(batch, 0);
  initial_ = model_->initial_tokens();
}

int LmGen::user_codebooks() const { return model_->config().n_q - model_->config().dep_q; }

void LmGen::reset(int stream) {
  MOSHI_CHECK(stream >= 0 && stream < batch_, "stream ", stream, " is out of range");
  offsets_[stream] = 0;
  for (int k = 0; k < K_; ++k)
    for (int s = 0; s < CT_; ++s) cache(stream, k, s) = kUngenerated;
  model_->reset(*state_, stream);
}

void LmGen::skip_context(int64_t steps) {
  MOSHI_CHECK(steps >= 0, "skip_context: steps must be >= 0");
  for (int b = 0; b < batch_; ++b) {
    offsets_[b] += steps;
    model_->skip(*state_, b, steps);
  }
}

void LmGen::step(const std::vector<int64_t>& user, int n_user, std::vector<int64_t>& out,
                 std::vector<uint8_t>& ready, std::vector<float>* text_logits) {
  const auto t0 = Clock::now();
  const LmConfig& c = model_->config();
  const int B = batch_, G = c.dep_q + 1, nu = user_codebooks();
  MOSHI_CHECK(n_user >= nu && static_cast<int64_t>(user.size()) == static_cast<int64_t>(B) * n_user, "lm step: ",
              user.size(), " user tokens, expected [", B, ", >= ", nu, "]");
  const auto& d = c.delays;
  // 1. User streams land `delay` steps ahead in their cache.
  for (int b = 0; b < B; ++b)
    for (int k = G; k < K_; ++k) {
      const int64_t tok = user[static_cast<size_t>(b) * n_user + (k - G)];
      MOSHI_CHECK(tok >= -1 && tok < c.card, "lm step: user token ", tok, " is out of range [-1, ", c.card, ")");
      cache(b, k, (offsets_[b] + d[k]) % CT_) = tok;
    }
  // 2. Inputs: the initial token until a stream's delay has elapsed, then the cached token.
  std::vector<int64_t> input(static_cast<size_t>(B) * K_);
  for (int b = 0; b < B; ++b)
    for (int k = 0; k < K_; ++k)
      input[static_cast<size_t>(b) * K_ + k] = offsets_[b] <= d[k] ? initial_[k] : cache(b, k, offsets_[b] % CT_);
  // 3-4. Temporal step and text token, then 5. the depformer over the audio codebooks, each
  // token drawn on the backend and fed to the next codebook there. Each part is a stage the
  // backend may record once and replay (not while a tap reads intermediate results).
  Backend& be = model_->backend();
  const bool staged = state_->tap == nullptr;
  const auto i0 = Clock::now();
  StageHandle::Scope temporal = state_->temporal_stage.run(staged);
  const Tensor& tl = model_->temporal_step(*state_, input);
  be.sample(tl, params_.text, params_.seed, offsets_, kTextSite, state_->tokens, 0);
  const auto i1 = Clock::now();
  temporal.finish();
  if (text_logits) {
    text_logits->resize(static_cast<size_t>(tl.numel()));
    be.download(tl, text_logits->data());
  }
  // The depformer is queued right behind the temporal stage, with no wait between them (a wait
  // here cost 0.04-0.16 ms a step on an H100); marks time it on the device.
  be.mark(0);
  double issue_ms = ms_between(i0, i1);
  if (c.dep_q > 0) {
    const auto i2 = Clock::now();
    StageHandle::Scope depformer = state_->depformer_stage.run(staged);
    model_->depformer_frame(*state_, [&](int k, const Tensor& logits) {
      be.sample(logits, params_.audio, params_.seed, offsets_, 1 + static_cast<uint64_t>(k), state_->tokens, 1 + k);
    });
    issue_ms += ms_between(i2, Clock::now());
    depformer.finish();
  }
  be.mark(1);
  tokens_.resize(static_cast<size_t>(state_->tokens.numel()));
  be.download(state_->tokens, tokens_.data());
  const double depformer_ms = be.marks_ms(0, 1);
  std::vector<int64_t> text(B), audio(static_cast<size_t>(B) * c.dep_q);
  for (int b = 0; b < B; ++b) {
    text[b] = tokens_[static_cast<size_t>(b) * G];
    const int64_t text_rows = std::min<int64_t>(c.text_card_out, c.text_card + 1);  // embeddable ids
    MOSHI_CHECK(text[b] >= 0 && text[b] < text_rows, "lm step: drawn text token ", text[b], " is out of range [0, ",
                text_rows, ")");
    for (int k = 0; k < c.dep_q; ++k) {
      const int64_t t = tokens_[static_cast<size_t>(b) * G + 1 + k];
      MOSHI_CHECK(t >= 0 && t < c.card, "lm step: drawn audio token ", t, " is out of range [0, ", c.card, ")");
      audio[static_cast<size_t>(b) * c.dep_q + k] = t;
    }
  }
  // 6. Advance and store what was generated.
  for (int b = 0; b < B; ++b) {
    const int64_t s = ++offsets_[b];
    cache(b, 0, s % CT_) = text[b];
    for (int k = 0; k < c.dep_q; ++k) cache(b, 1 + k, s % CT_) = audio[static_cast<size_t>(b) * c.dep_q + k];
  }
  // 7. Return one undelayed frame once the largest delay has elapsed and all of it was generated
  // (after skip_context, the skipped steps' tokens never were).
  const int max_delay = c.max_delay();
  out.assign(static_cast<size_t>(B) * G, kUngenerated);
  ready.assign(B, 0);
  for (int b = 0; b < B; ++b) {
    const int64_t s = offsets_[b];
    if (s <= max_delay) continue;
    bool whole = true;
    for (int k = 0; k < G; ++k) whole = whole && cache(b, k, (s - max_delay + d[k]) % CT_) != kUngenerated;
    if (!whole) continue;
    ready[b] = 1;
    for (int k = 0; k < G; ++k) out[static_cast<size_t>(b) * G + k] = cache(b, k, (s - max_delay + d[k]) % CT_);
  }
  timings_.total_ms = ms_between(t0, Clock::now());
  timings_.depformer_ms = depformer_ms;
  timings_.temporal_ms = timings_.total_ms - depformer_ms;
  timings_.issue_ms = issue_ms;
}

}  // namespace moshi
