#include "weights/weight_source.h"

#include <cmath>

#include "core/error.h"

namespace moshi {

bool SafetensorsSource::find(const std::string& name, Tensor* out) const {
  if (!file_->has(name)) return false;
  *out = file_->get(name);
  return true;
}

std::vector<std::string> SafetensorsSource::names() const {
  std::vector<std::string> v;
  for (const auto& kv : file_->header().tensors) v.push_back(kv.first);
  return v;
}

bool MemorySource::find(const std::string& name, Tensor* out) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) return false;
  *out = it->second;
  return true;
}

std::vector<std::string> MemorySource::names() const {
  std::vector<std::string> v;
  for (const auto& kv : tensors_) v.push_back(kv.first);
  return v;
}

namespace {
uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}
}  // namespace

bool SyntheticSource::synthesize(const std::string& name, const Shape& shape, DType dtype, Tensor* out) const {
  uint64_t state = seed_ ^ 0x6d6f736869ull;
  for (char c : name) state = (state ^ static_cast<uint8_t>(c)) * 0x100000001b3ull;  // FNV-style mix of the name
  Tensor t = Tensor::zeros(DType::F32, shape);
  float* p = t.f32();
  const int64_t n = t.numel(), fan_in = shape.empty() || shape[0] == 0 ? 1 : std::max<int64_t>(1, n / shape[0]);
  auto uniform = [&] { return static_cast<float>((splitmix64(state) >> 40) * (1.0 / (1ull << 24)) * 2.0 - 1.0); };
  if (ends_with(name, ".scale")) {
    std::fill_n(p, n, 0.01f);  // LayerScale's initial value
  } else if (name.find("norm") != std::string::npos && ends_with(name, ".weight")) {
    std::fill_n(p, n, 1.f);
  } else if (ends_with(name, "alpha") || ends_with(name, "cluster_usage")) {
    std::fill_n(p, n, 1.f);
  } else if (ends_with(name, "embedding_sum") || ends_with(name, "_initialized")) {
    for (int64_t i = 0; i < n; ++i) p[i] = uniform();
  } else if (ends_with(name, ".bias")) {
    for (int64_t i = 0; i < n; ++i) p[i] = 0.01f * uniform();
  } else {
    const float a = 1.f / std::sqrt(static_cast<float>(fan_in));
    for (int64_t i = 0; i < n; ++i) p[i] = a * uniform();
  }
  if (dtype == DType::BF16) {  // made in f32 and rounded, one tensor at a time
    Tensor b = Tensor::zeros(DType::BF16, shape);
    uint16_t* q = b.ptr<uint16_t>();
    for (int64_t i = 0; i < n; ++i) q[i] = f32_to_bf16(p[i]);
    t = b;
  }
  *out = t;
  return true;
}

Tensor apply_policy(const Tensor& raw, const MatrixPolicy& p) {
  if (p.convert == MatrixPolicy::Convert::ToF32 && raw.dtype() != DType::F32) return to_f32(raw);
  if (p.convert == MatrixPolicy::Convert::ToBf16 && raw.dtype() != DType::BF16) {
    Tensor f = raw.dtype() == DType::F32 ? raw : to_f32(raw);
    Tensor b = Tensor::zeros(DType::BF16, raw.shape());
    for (int64_t i = 0; i < f.numel(); ++i) b.ptr<uint16_t>()[i] = f32_to_bf16(f.f32()[i]);
    return b;
  }
  return raw;
}

bool WeightBinder::has(const std::string& name) const {
  Tensor t;
  return src_.find(name, &t);
}

Tensor WeightBinder::take(const std::vector<std::string>& names, const Shape& shape, DType synth) {
  Tensor t;
  for (const auto& n : names) {
    if (!src_.find(n, &t)) continue;
    MOSHI_CHECK(t.shape() == shape, src_.describe(), ": tensor '", n, "' has shape ", shape_str(t.shape()),
                ", expected ", shape_str(shape));
    MOSHI_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::BF16 || t.dtype() == DType::F16, src_.describe(),
                ": tensor '", n, "' has dtype ", dtype_name(t.dtype()), ", expected a float type");
    return t;
  }
  if (src_.synthesize(names[0], shape, synth, &t)) return t;
  std::string alts;
  for (size_t i = 1; i < names.size(); ++i) alts += (i == 1 ? " (or '" : ", '") + names[i] + "'";
  if (!alts.empty()) alts += ")";
  fail(src_.describe(), ": missing tensor '", names[0], "'", alts, " (expected shape ", shape_str(shape), ")");
}

}  // namespace moshi
