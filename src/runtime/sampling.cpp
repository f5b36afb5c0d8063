#include "runtime/sampling.h"

#include "runtime/counter_rng.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace moshi {

double counter_uniform(uint64_t seed, uint64_t stream, uint64_t step, uint64_t site, uint64_t index) {
  return counter_uniform_of(seed, stream, step, site, index);
}

int64_t sample_token(const float* logits, int64_t V, const SamplingParams& p, uint64_t seed, uint64_t stream,
                     uint64_t step, uint64_t site) {
  if (!p.use_sampling || p.temp <= 0.f) {
    int64_t best = 0;
    for (int64_t i = 1; i < V; ++i)
      if (logits[i] > logits[best]) best = i;  // strict: ties keep the lowest index
    return best;
  }
  // p = softmax(logits / temp) in f32.
  std::vector<float> prob(V);
  float mx = -INFINITY;
  for (int64_t i = 0; i < V; ++i) mx = std::max(mx, logits[i] / p.temp);
  float sum = 0.f;
  for (int64_t i = 0; i < V; ++i) sum += (prob[i] = std::exp(logits[i] / p.temp - mx));
  for (float& v : prob) v /= sum;
  std::vector<int64_t> cand(V);
  std::iota(cand.begin(), cand.end(), 0);
  if (p.top_k > 0 && p.top_k < V) {
    std::partial_sort(cand.begin(), cand.begin() + p.top_k, cand.end(), [&](int64_t a, int64_t b) {
      return prob[a] > prob[b] || (prob[a] == prob[b] && a < b);
    });
    cand.resize(p.top_k);
  }
  // Exponential race: argmax p_i / e_i with e_i ~ Exp(1), a multinomial draw over the candidates.
  int64_t best = -1;
  double best_score = -1;
  for (int64_t id : cand) {
    const double e = -std::log(counter_uniform(seed, stream, step, site, static_cast<uint64_t>(id)));
    const double score = prob[id] / e;
    if (score > best_score || (score == best_score && id < best)) {
      best_score = score;
      best = id;
    }
  }
  return best;
}

}  // namespace moshi
