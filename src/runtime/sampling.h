// Token sampling (model-spec §3.4): greedy, or temperature + top-k drawn with the exponential
// race. Randomness is counter-based: every draw is a pure function of (seed, stream, step,
// site, token), so a run replays exactly from its seed on any machine and backend that
// computes the same logits, and a stream's reset replays its draws too.
#pragma once
#include <cstdint>
#include <vector>

namespace moshi {

struct SamplingParams {
  bool use_sampling = true;
  float temp = 0.8f;
  int top_k = 250;  // <= 0: whole vocabulary
};

// Uniform in (0, 1) for the given counter.
double counter_uniform(uint64_t seed, uint64_t stream, uint64_t step, uint64_t site, uint64_t index);

// One token from logits[0..V). Greedy when !use_sampling or temp <= 0 (ties: lowest index).
int64_t sample_token(const float* logits, int64_t V, const SamplingParams& p, uint64_t seed, uint64_t stream,
                     uint64_t step, uint64_t site);

}  // namespace moshi
