// Split residual vector quantizer (model-spec §1.8): a 1-level semantic RVQ and an
// (n_q-1)-level acoustic RVQ, both fed the same latent.
#pragma once
#include <vector>

#include "codec/mimi_config.h"
#include "runtime/backend.h"
#include "runtime/workspace.h"
#include "weights/weight_source.h"

namespace moshi {

class SplitRvq {
 public:
  void load(WeightBinder& wb, Backend& be, const QuantizerConfig& c);
  int total_codebooks() const { return n_q_; }

  // z [N, C] (rows = frames) -> codes [N, K] (i64) for the first K codebooks.
  void encode(Backend& be, const Tensor& z, int K, Tensor& codes, Workspace& ws) const;
  // codes [N, K] -> z [N, C].
  void decode(Backend& be, const Tensor& codes, int K, Tensor& z, Workspace& ws) const;

 private:
  struct Rvq {
    Tensor in_proj, out_proj;                 // [D, C], [C, D]
    std::vector<Tensor> codebooks, norms;     // [bins, D], [bins]
  };
  void load_rvq(WeightBinder& wb, Backend& be, const std::string& name, int levels, Rvq& r);
  QuantizerConfig c_;
  int n_q_ = 0;
  Rvq first_, rest_;
};

}  // namespace moshi
