// moshi-rt public API: a complete Moshi model (LM + Mimi + text tokenizer) and conversation
// sessions that take user audio in and give the model's audio and text out, 80 ms at a time,
// exactly as the reference's streaming loop runs.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "moshi/error.h"
#include "moshi/lm.h"

namespace moshi {

struct ModelOptions {
  std::string device = "cpu";
  int threads = 0;                     // CPU worker threads; 0 = all cores
  std::string weights_dtype = "auto";  // LM matrices: "auto" (as stored), "bf16", "f32"
  uint64_t seed = 0;                   // synthetic weights only
  bool download = true;                // fetch a repo id's missing files from the hub
  double memory_limit_gb = 0;          // refuse to load above this estimate; 0 = available memory
};

struct SessionOptions {
  SamplingOptions sampling;  // defaults: the reference's (audio 0.8/250, text 0.7/25)
  uint64_t seed = 0;
};

struct TextPiece {
  int64_t frame = 0;   // output frame the token belongs to (time = frame · 80 ms)
  double time_s = 0;
  int64_t token = 0;
  std::string text;    // as the reference prints it (word starts carry a leading space)
};

struct SessionTimings {  // cumulative since the session started (or was reset)
  int64_t frames = 0;     // model frames produced
  double mimi_encode_ms = 0, lm_temporal_ms = 0, lm_depformer_ms = 0, mimi_decode_ms = 0;
};

class Session;

class Model {
 public:
  // `spec`: a local directory with model.safetensors, tokenizer-e351c8d8-checkpoint125.safetensors,
  // tokenizer_spm_32k_3.model and optionally config.json (its moshi_name / mimi_name /
  // tokenizer_name override the names); a Hugging Face repo id (kyutai/moshiko-pytorch-bf16,
  // kyutai/moshika-pytorch-bf16), looked up in the HF cache and otherwise downloaded; or
  // "synthetic:moshi-7b" / "synthetic:tiny" (seeded random weights: the pipeline runs, the
  // speech is nonsense).
  static Model load(const std::string& spec, const ModelOptions& opts = {});

  int sample_rate() const;  // 24000
  int frame_size() const;   // 1920
  double frame_rate() const;
  bool synthetic() const;
  std::string describe() const;
  // Estimated memory the model and one session need, and what was found available.
  double estimated_gb() const;
  // The sampling a session gets by default: the config's lm_gen_config, else the reference's.
  SamplingOptions default_sampling() const;

  Session session(const SessionOptions& opts = {}) const;

  struct Impl;
  const std::shared_ptr<const Impl>& impl() const { return impl_; }

 private:
  std::shared_ptr<const Impl> impl_;
};

// One conversation. Push user audio (mono, model rate) in any chunk size; every complete 80 ms
// frame runs a step; the model's audio and text come out as frames complete.
class Session {
 public:
  // Returns the number of model frames that became available.
  int push_audio(const float* pcm, size_t n);
  // Moves out the model audio produced so far (appended to `out`); returns samples moved.
  size_t pull_audio(std::vector<float>& out);
  // Moves out the text pieces produced so far (padding tokens are not reported).
  std::vector<TextPiece> pull_text();
  // Zero-pads a pending partial frame (if any) and runs it.
  int flush();
  void reset();  // back to the initial state, RNG included
  const SessionTimings& timings() const;

  ~Session();
  Session(Session&&) noexcept;
  Session& operator=(Session&&) noexcept;

 private:
  friend class Model;
  struct State;
  explicit Session(std::unique_ptr<State> s);
  std::unique_ptr<State> s_;
};

}  // namespace moshi
