#include "weights/weight_source.h"

#include <algorithm>
#include <cmath>
#include <thread>
#include <vector>

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
uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}
// Runs fn(begin, end) over [0, n) on all cores: the 7B synthetic model has 7.7 G values.
template <typename F>
void parallel_ranges(int64_t n, F fn) {
  const int64_t parts = n < (1 << 20) ? 1 : std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> ts;
  for (int64_t i = 1; i < parts; ++i) ts.emplace_back([=] { fn(n * i / parts, n * (i + 1) / parts); });
  fn(0, n / parts);
  for (auto& t : ts) t.join();
}
}  // namespace

bool SyntheticSource::synthesize(const std::string& name, const Shape& shape, DType dtype, Tensor* out) const {
  uint64_t base = seed_ ^ 0x6d6f736869ull;
  for (char c : name) base = (base ^ static_cast<uint8_t>(c)) * 0x100000001b3ull;  // FNV-style mix of the name
  const int64_t n = shape_numel(shape), fan_in = shape.empty() || shape[0] == 0 ? 1 : std::max<int64_t>(1, n / shape[0]);
  // Element i is a pure function of (seed, name, i): counter-based, so any split of the work
  // gives the same tensor.
  auto uniform = [base](int64_t i) {
    return static_cast<float>((mix64(base + 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(i + 1)) >> 40) *
                                  (1.0 / (1ull << 24)) * 2.0 - 1.0);
  };
  float fill = 0.f, scale = 0.f;  // value = fill, or scale * uniform
  if (ends_with(name, ".scale")) fill = 0.01f;  // LayerScale's initial value
  else if (name.find("norm") != std::string::npos && ends_with(name, ".weight")) fill = 1.f;
  else if (ends_with(name, "alpha") || ends_with(name, "cluster_usage")) fill = 1.f;
  else if (ends_with(name, "embedding_sum") || ends_with(name, "_initialized")) scale = 1.f;
  else if (ends_with(name, ".bias")) scale = 0.01f;
  else scale = 1.f / std::sqrt(static_cast<float>(fan_in));
  auto value = [&](int64_t i) { return scale != 0.f ? scale * uniform(i) : fill; };
  Tensor t = Tensor::zeros(dtype == DType::BF16 ? DType::BF16 : DType::F32, shape);
  if (dtype == DType::BF16) {
    uint16_t* q = t.ptr<uint16_t>();
    parallel_ranges(n, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) q[i] = f32_to_bf16(value(i));
    });
  } else {
    float* p = t.f32();
    parallel_ranges(n, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) p[i] = value(i);
    });
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
    taken_ += t.numel();
    return t;
  }
  if (src_.synthesize(names[0], shape, synth, &t)) {
    taken_ += t.numel();
    return t;
  }
  std::string alts;
  for (size_t i = 1; i < names.size(); ++i) alts += (i == 1 ? " (or '" : ", '") + names[i] + "'";
  if (!alts.empty()) alts += ")";
  fail(src_.describe(), ": missing tensor '", names[0], "'", alts, " (expected shape ", shape_str(shape), ")");
}

}  // namespace moshi
