// moshi-rt public API: the Moshi language model on its own (temporal transformer + depformer),
// for generation step by step over token streams. Speech in and out (with Mimi and the text
// tokenizer) builds on this.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "moshi/error.h"

namespace moshi {

struct LmOptions {
  std::string device = "cpu";
  int threads = 0;                     // CPU worker threads; 0 = all cores
  std::string weights_dtype = "auto";  // "auto" (as stored), "bf16", "f32"
  uint64_t seed = 0;                   // synthetic weights only
  std::string config_json;             // a Kyutai config.json's text; empty = Moshi 7B's
};

struct SamplingOptions {
  bool greedy = false;  // argmax for text and audio (ties: lowest id)
  float temp = 0.8f, temp_text = 0.7f;
  int top_k = 250, top_k_text = 25;
};

// total_ms: the step's wall time; depformer_ms: the depformer on the device (queued behind the
// temporal stage, timed by the backend); temporal_ms: the rest (host work, the temporal stage).
struct LmStepTimings {
  double temporal_ms = 0, depformer_ms = 0, total_ms = 0;
  double issue_ms = 0;  // host time spent issuing the step's work (part of the above)
};

class LmGenerator;

class Lm {
 public:
  // `spec`: "synthetic:moshi-7b" (the real 7B shapes, seeded random bf16 weights, ~15.4 GB),
  // "synthetic:tiny" (a small model of the same structure), or a model.safetensors path (with
  // options.config_json, or Moshi 7B's configuration). Random weights produce nonsense.
  static Lm load(const std::string& spec, const LmOptions& opts = {});

  int num_codebooks() const;   // 1 + n_q: text, then audio streams
  int dep_q() const;           // audio codebooks the model generates
  int user_codebooks() const;  // audio codebooks it listens to (n_q - dep_q)
  int card() const;
  int text_card() const;
  int max_delay() const;
  int text_padding_id() const;
  int text_end_padding_id() const;
  double weight_bytes_per_step() const;
  double kv_bytes_per_position() const;  // KV cache bytes a stream's step reads per step of context
  int context() const;  // steps the temporal transformer attends to (0: unlimited)
  // Read bandwidth of the memory the model's weights live in (GB/s), measured now: the device's
  // for a GPU, main memory (with the model's threads) for the CPU.
  double measure_read_bandwidth_gbps() const;
  std::string describe() const;

  // `batch` independent streams; stream b draws from (seed, b).
  LmGenerator generator(int batch, const SamplingOptions& sampling, uint64_t seed) const;

  struct Impl;
  const std::shared_ptr<const Impl>& impl() const { return impl_; }

 private:
  std::shared_ptr<const Impl> impl_;
};

class LmGenerator {
 public:
  // user: [batch, user_codebooks()] tokens for this step. Returns true if any stream produced a
  // frame: out [batch, 1 + dep_q] (text, then audio tokens; -2 where ready[b] == 0).
  bool step(const std::vector<int64_t>& user, std::vector<int64_t>* out, std::vector<uint8_t>* ready,
            std::vector<float>* text_logits = nullptr);
  void reset();
  void reset(int stream);
  // Moves every stream `steps` steps on without computing them, as if that much context (all
  // zeros) had been seen: the next steps attend over it. For timing long conversations without
  // running them; what follows continues nothing meaningful. Frames come again (ready) once the
  // delays have passed over computed steps.
  void skip_context(int64_t steps);
  int batch() const;
  LmStepTimings last_timings() const;
  ~LmGenerator();
  LmGenerator(LmGenerator&&) noexcept;
  LmGenerator& operator=(LmGenerator&&) noexcept;

 private:
  friend class Lm;
  struct State;
  explicit LmGenerator(std::unique_ptr<State> s);
  std::unique_ptr<State> s_;
};

}  // namespace moshi
