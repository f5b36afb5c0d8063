#include "codec/quantizer.h"

#include <algorithm>

#include "core/error.h"
#include "weights/safetensors.h"

namespace moshi {

void SplitRvq::load_rvq(WeightBinder& wb, Backend& be, const std::string& name, int levels, Rvq& r) {
  const int64_t C = c_.input_dimension, D = c_.dimension, bins = c_.bins;
  r.in_proj = be.prepare_linear(wb.take(name + ".input_proj.weight", {D, C, 1}).reshape({D, C}));
  r.out_proj = be.prepare_linear(wb.take(name + ".output_proj.weight", {c_.output_dimension, D, 1})
                                     .reshape({c_.output_dimension, D}));
  for (int l = 0; l < levels; ++l) {
    const std::string p = name + ".vq.layers." + std::to_string(l) + "._codebook.";
    Tensor sum = to_f32(wb.take(p + "embedding_sum", {bins, D}));
    Tensor usage = to_f32(wb.take(p + "cluster_usage", {bins}));
    // Codebook = embedding_sum / max(cluster_usage, eps), computed once.
    Tensor cb = Tensor::zeros(DType::F32, {bins, D});
    Tensor nrm = Tensor::zeros(DType::F32, {bins});
    for (int64_t j = 0; j < bins; ++j) {
      const float u = std::max(usage.f32()[j], 1e-5f);
      float n2 = 0.f;
      for (int64_t d = 0; d < D; ++d) {
        const float v = sum.f32()[j * D + d] / u;
        cb.f32()[j * D + d] = v;
        n2 += v * v;
      }
      nrm.f32()[j] = n2;
    }
    r.codebooks.push_back(be.prepare_linear(cb));
    r.norms.push_back(be.prepare_vector(nrm));
  }
}

void SplitRvq::load(WeightBinder& wb, Backend& be, const QuantizerConfig& c) {
  c_ = c;
  n_q_ = c.n_q;
  load_rvq(wb, be, "quantizer.rvq_first", 1, first_);
  load_rvq(wb, be, "quantizer.rvq_rest", c.n_q - 1, rest_);
}

void SplitRvq::encode(Backend& be, const Tensor& z, int K, Tensor& codes, Workspace& ws) const {
  MOSHI_CHECK(K >= 1 && K <= n_q_, "number of codebooks ", K, " is out of range [1, ", n_q_, "]");
  const int64_t N = z.dim(0), D = c_.dimension;
  Tensor& r = ws.f32(be, 10, {N, D});
  MOSHI_CHECK(codes.numel() == N * K, "quantizer encode: codes must be [", N, ", ", K, "]");
  for (int part = 0; part < 2; ++part) {
    const Rvq& q = part == 0 ? first_ : rest_;
    const int levels = part == 0 ? 1 : K - 1;
    if (levels == 0) continue;
    be.linear(z, q.in_proj, nullptr, r);
    for (int l = 0; l < levels; ++l) be.vq_encode(r, q.codebooks[l], q.norms[l], codes, part == 0 ? 0 : 1 + l);
  }
}

void SplitRvq::decode(Backend& be, const Tensor& codes, int K, Tensor& z, Workspace& ws) const {
  MOSHI_CHECK(K >= 1 && K <= n_q_, "number of codebooks ", K, " is out of range [1, ", n_q_, "]");
  const int64_t N = codes.numel() / K, D = c_.dimension;
  Tensor& acc = ws.f32(be, 12, {N, D});
  Tensor& part_out = ws.f32(be, 13, {N, c_.output_dimension});
  for (int part = 0; part < 2; ++part) {
    const Rvq& q = part == 0 ? first_ : rest_;
    const int levels = part == 0 ? 1 : K - 1;
    if (levels == 0) continue;
    be.zero(acc);
    for (int l = 0; l < levels; ++l) {
      be.vq_decode_add(acc, q.codebooks[l], q.norms[l], codes, part == 0 ? 0 : 1 + l);
    }
    if (part == 0) {
      be.linear(acc, q.out_proj, nullptr, z);
    } else {
      be.linear(acc, q.out_proj, nullptr, part_out);
      be.add_scaled(z, part_out, nullptr);
    }
  }
}

}  // namespace moshi
