// Element-wise ops, norms and layout changes on the CPU.
#include <cmath>
#include <cstring>
#include <algorithm>
#include <string>

#include "core/error.h"
#include "core/op_profile.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/cpu/kernels.h"

namespace moshi {

void CpuBackend::elu(const Tensor& x, Tensor& y) {
  OpTimer timer("elu");
  MOSHI_CHECK(x.numel() == y.numel(), "elu: size mismatch");
  if (y.data() != x.data()) std::memcpy(y.data(), x.data(), x.nbytes());
  cpu::elu_inplace(y.f32(), y.numel());
}

bool act_from_name(const std::string& name, Act* out) {
  static const struct { const char* n; Act a; } table[] = {
      {"identity", Act::Identity}, {"gelu", Act::Gelu}, {"silu", Act::Silu}, {"relu", Act::Relu},
      {"sigmoid", Act::Sigmoid},   {"tanh", Act::Tanh}, {"elu", Act::Elu}};
  for (const auto& e : table)
    if (name == e.n) {
      *out = e.a;
      return true;
    }
  return false;
}

namespace {
inline float apply_act(float v, Act a) {
  switch (a) {
    case Act::Identity: return v;
    case Act::Gelu: return 0.5f * v * (1.f + std::erf(v * static_cast<float>(M_SQRT1_2)));
    case Act::Silu: return v / (1.f + std::exp(-v));
    case Act::Relu: return v > 0.f ? v : 0.f;
    case Act::Sigmoid: return 1.f / (1.f + std::exp(-v));
    case Act::Tanh: return std::tanh(v);
    case Act::Elu: return v > 0.f ? v : std::expm1(v);
  }
  return v;
}
}  // namespace

void CpuBackend::activation(Tensor& x, Act act) {
  OpTimer timer("activation");
  float* p = x.f32();
  const int64_t n = x.numel();
  if (act == Act::Elu) return cpu::elu_inplace(p, n);
  for (int64_t i = 0; i < n; ++i) p[i] = apply_act(p[i], act);
}

void CpuBackend::gated_activation(const Tensor& x, Act act, Tensor& y) {
  OpTimer timer("gated_activation");
  const int64_t H = y.dim(-1), N = y.numel() / H;
  MOSHI_CHECK(x.numel() == 2 * N * H, "gated_activation: x ", shape_str(x.shape()), " is not twice y ",
              shape_str(y.shape()));
  const float* px = x.f32();
  float* py = y.f32();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t h = 0; h < H; ++h) py[n * H + h] = apply_act(px[n * 2 * H + h], act) * px[n * 2 * H + H + h];
}

void CpuBackend::rms_norm(const Tensor& x, const Tensor& alpha, float eps, Tensor& y) {
  OpTimer timer("rms_norm");
  const int64_t C = alpha.numel(), N = x.numel() / C;
  const float *px = x.f32(), *pa = alpha.f32();
  float* py = y.f32();
  for (int64_t n = 0; n < N; ++n) {
    const float* r = px + n * C;
    double ss = 0;
    for (int64_t c = 0; c < C; ++c) ss += static_cast<double>(r[c]) * r[c];
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / C + eps));
    for (int64_t c = 0; c < C; ++c) py[n * C + c] = r[c] * (pa[c] * inv);
  }
}

void CpuBackend::embedding(const Tensor& table, const std::vector<int64_t>& ids, Tensor& out, bool accumulate) {
  const int64_t V = table.dim(0), D = table.dim(1), N = static_cast<int64_t>(ids.size());
  MOSHI_CHECK(out.numel() == N * D, "embedding: ", N, " ids for output ", shape_str(out.shape()));
  float* po = out.f32();
  for (int64_t n = 0; n < N; ++n) {
    float* o = po + n * D;
    const int64_t id = ids[n];
    MOSHI_CHECK(id < V, "token id ", id, " is out of range for an embedding of ", V, " rows");
    if (id == -1) {  // the zero token embeds to exact zeros
      if (!accumulate) std::fill_n(o, D, 0.f);
      continue;
    }
    const int64_t row = id < 0 ? 0 : id;
    if (table.dtype() == DType::BF16) {
      const uint16_t* src = table.ptr<uint16_t>() + row * D;
      for (int64_t d = 0; d < D; ++d) o[d] = (accumulate ? o[d] : 0.f) + bf16_to_f32(src[d]);
    } else {
      const float* src = table.f32() + row * D;
      for (int64_t d = 0; d < D; ++d) o[d] = (accumulate ? o[d] : 0.f) + src[d];
    }
  }
}

void CpuBackend::embedding_from(const Tensor& table, const Tensor& ids, int64_t col, Tensor& out, bool accumulate) {
  MOSHI_CHECK(ids.dtype() == DType::I64 && ids.ndim() == 2 && col >= 0 && col < ids.dim(1),
              "embedding_from: ids ", shape_str(ids.shape()), " have no column ", col);
  const int64_t N = ids.dim(0), S = ids.dim(1), V = table.dim(0);
  std::vector<int64_t> v(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) v[n] = std::min(ids.i64()[n * S + col], V - 1);
  embedding(table, v, out, accumulate);
}

void CpuBackend::sample(const Tensor& logits, const SamplingParams& p, uint64_t seed,
                        const std::vector<int64_t>& steps, uint64_t site, Tensor& tokens, int64_t col) {
  const int64_t B = static_cast<int64_t>(steps.size()), V = B ? logits.numel() / B : 0;
  MOSHI_CHECK(logits.dtype() == DType::F32 && V > 0 && logits.numel() == B * V, "sample: logits ",
              shape_str(logits.shape()), " for ", B, " streams");
  MOSHI_CHECK(tokens.dtype() == DType::I64 && tokens.ndim() == 2 && tokens.dim(0) == B && col >= 0 &&
                  col < tokens.dim(1),
              "sample: tokens ", shape_str(tokens.shape()), " have no column ", col, " for ", B, " streams");
  for (int64_t b = 0; b < B; ++b)
    tokens.i64()[b * tokens.dim(1) + col] =
        sample_token(logits.f32() + b * V, V, p, seed, static_cast<uint64_t>(b), static_cast<uint64_t>(steps[b]), site);
}

void CpuBackend::sin_embedding_add(Tensor& x, const std::vector<int64_t>& pos, float max_period, float scale) {
  const int64_t N = static_cast<int64_t>(pos.size()), C = x.numel() / N, half = C / 2;
  float* px = x.f32();
  for (int64_t n = 0; n < N; ++n) {
    const float p = static_cast<float>(pos[n]);
    for (int64_t i = 0; i < half; ++i) {
      const float phase = p / std::pow(max_period, static_cast<float>(i) / static_cast<float>(half - 1));
      px[n * C + i] += scale * std::cos(phase);
      px[n * C + half + i] += scale * std::sin(phase);
    }
  }
}

void CpuBackend::add(const Tensor& a, const Tensor& b, Tensor& y) {
  OpTimer timer("add");
  MOSHI_CHECK(a.numel() == b.numel() && a.numel() == y.numel(), "add: size mismatch ", shape_str(a.shape()), " + ",
              shape_str(b.shape()));
  const float *pa = a.f32(), *pb = b.f32();
  float* py = y.f32();
  const int64_t n = a.numel();
  for (int64_t i = 0; i < n; ++i) py[i] = pa[i] + pb[i];
}

void CpuBackend::add_scaled(Tensor& x, const Tensor& u, const Tensor* scale) {
  OpTimer timer("add_scaled");
  MOSHI_CHECK(x.numel() == u.numel(), "add_scaled: size mismatch");
  float* px = x.f32();
  const float* pu = u.f32();
  const int64_t n = x.numel();
  if (!scale) {
    for (int64_t i = 0; i < n; ++i) px[i] += pu[i];
    return;
  }
  const int64_t C = scale->numel();
  const float* ps = scale->f32();
  for (int64_t r = 0; r < n / C; ++r)
    for (int64_t c = 0; c < C; ++c) px[r * C + c] += ps[c] * pu[r * C + c];
}

void CpuBackend::transpose_ct(const Tensor& x, Tensor& y) {
  OpTimer timer("transpose");
  const int64_t B = x.dim(0), C = x.dim(1), T = x.dim(2);
  MOSHI_CHECK(y.numel() == x.numel(), "transpose: size mismatch");
  const float* px = x.f32();
  float* py = y.f32();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t t = 0; t < T; ++t) py[(b * T + t) * C + c] = px[(b * C + c) * T + t];
}

void CpuBackend::transpose_tc(const Tensor& x, Tensor& y) {
  const int64_t B = x.dim(0), T = x.dim(1), C = x.dim(2);
  MOSHI_CHECK(y.numel() == x.numel(), "transpose: size mismatch");
  const float* px = x.f32();
  float* py = y.f32();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t c = 0; c < C; ++c) py[(b * C + c) * T + t] = px[(b * T + t) * C + c];
}

void CpuBackend::layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor& y) {
  OpTimer timer("layer_norm");
  const int64_t C = w.numel(), N = x.numel() / C;
  const float *px = x.f32(), *pw = w.f32(), *pb = b.f32();
  float* py = y.f32();
  for (int64_t n = 0; n < N; ++n) {
    const float* r = px + n * C;
    double mean = 0, var = 0;
    for (int64_t c = 0; c < C; ++c) mean += r[c];
    mean /= C;
    for (int64_t c = 0; c < C; ++c) var += (r[c] - mean) * (r[c] - mean);
    var /= C;
    const float m = static_cast<float>(mean), inv = static_cast<float>(1.0 / std::sqrt(var + eps));
    for (int64_t c = 0; c < C; ++c) py[n * C + c] = (r[c] - m) * inv * pw[c] + pb[c];
  }
}

}  // namespace moshi
