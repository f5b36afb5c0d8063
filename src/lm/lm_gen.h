// Streaming generation with the reference's LMGen semantics (model-spec §3): per-stream delay
// caches, the initial-token rule, text then depformer sampling, and what each step returns.
#pragma once
#include <memory>
#include <vector>

#include "lm/lm_model.h"
#include "runtime/sampling.h"

namespace moshi {

struct GenParams {
  SamplingParams text{true, 0.7f, 25};
  SamplingParams audio{true, 0.8f, 250};
  uint64_t seed = 0;
};

struct StepTimings {
  // Of the last step: total_ms its wall time, depformer_ms the depformer stage's device time
  // (Backend::marks_ms), temporal_ms the rest (host work and the temporal stage).
  double temporal_ms = 0, depformer_ms = 0, total_ms = 0;
  // Host time spent running the model code of both stages (issuing their ops, or for a
  // recorded stage staging its host arrays) before each is handed to the device.
  double issue_ms = 0;
};

class LmGen {
 public:
  LmGen(std::shared_ptr<const LmModel> model, int batch, const GenParams& params);

  int batch() const { return batch_; }
  int user_codebooks() const;  // n_q - dep_q
  // One step. `user` holds [B, n_user] tokens (n_user >= user_codebooks(); extra ones are
  // ignored). On return `out` is [B, 1 + dep_q]: text then audio tokens of one undelayed frame
  // for streams past the initial delay, -2 for the others (ready[b] says which).
  void step(const std::vector<int64_t>& user, int n_user, std::vector<int64_t>& out, std::vector<uint8_t>& ready,
            std::vector<float>* text_logits = nullptr);
  void reset(int stream);
  // Every stream `steps` steps on without computing them (see LmGenerator::skip_context).
  void skip_context(int64_t steps);
  int64_t offset(int stream) const { return offsets_[stream]; }
  const StepTimings& timings() const { return timings_; }
  void set_tap(const Tap* tap) { state_->set_tap(tap); }

 private:
  int64_t& cache(int b, int k, int64_t slot) { return cache_[(static_cast<size_t>(b) * K_ + k) * CT_ + slot]; }

  std::shared_ptr<const LmModel> model_;
  GenParams params_;
  int batch_, K_, CT_;
  std::unique_ptr<LmState> state_;
  std::vector<int64_t> cache_, offsets_, initial_;
  std::vector<int64_t> tokens_;  // the step's drawn tokens, read back from the backend
  StepTimings timings_;
};

}  // namespace moshi
