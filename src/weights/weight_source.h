// Where a model's tensors come from (a checkpoint file, or tensors made in memory), and the
// binder that takes each tensor once by its reference name with its expected shape.
#pragma once
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "weights/safetensors.h"

namespace moshi {

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual std::string describe() const = 0;                   // for messages: file path or "synthetic"
  virtual bool find(const std::string& name, Tensor* out) const = 0;
  virtual std::vector<std::string> names() const = 0;
  // Sources that make weights on demand (synthetic models) fill `out` with a tensor of `shape`
  // in `dtype` (F32 or BF16).
  virtual bool synthesize(const std::string& name, const Shape& shape, DType dtype, Tensor* out) const {
    return false;
  }
};

class SafetensorsSource final : public WeightSource {
 public:
  explicit SafetensorsSource(std::shared_ptr<SafetensorsFile> f) : file_(std::move(f)) {}
  std::string describe() const override { return file_->path(); }
  bool find(const std::string& name, Tensor* out) const override;
  std::vector<std::string> names() const override;

 private:
  std::shared_ptr<SafetensorsFile> file_;
};

class MemorySource final : public WeightSource {
 public:
  explicit MemorySource(std::string what) : what_(std::move(what)) {}
  void add(const std::string& name, Tensor t) { tensors_[name] = std::move(t); }
  std::string describe() const override { return what_; }
  bool find(const std::string& name, Tensor* out) const override;
  std::vector<std::string> names() const override;

 private:
  std::string what_;
  std::map<std::string, Tensor> tensors_;
};

// Seeded random weights with any requested shape, for offline runs and benchmarks: the same
// load path as a checkpoint, numbers that carry no meaning. Values depend only on (seed, name).
class SyntheticSource final : public WeightSource {
 public:
  explicit SyntheticSource(uint64_t seed) : seed_(seed) {}
  std::string describe() const override { return "synthetic weights"; }
  bool find(const std::string&, Tensor*) const override { return false; }
  std::vector<std::string> names() const override { return {}; }
  bool synthesize(const std::string& name, const Shape& shape, DType dtype, Tensor* out) const override;

 private:
  uint64_t seed_;
};

// Records every tensor a load takes from a synthetic source, so tests can write a complete
// checkpoint with the reference's names (what a model directory would hold).
class RecordingSource final : public WeightSource {
 public:
  explicit RecordingSource(uint64_t seed) : inner_(seed) {}
  std::string describe() const override { return inner_.describe(); }
  bool find(const std::string&, Tensor*) const override { return false; }
  std::vector<std::string> names() const override { return {}; }
  bool synthesize(const std::string& name, const Shape& shape, DType dtype, Tensor* out) const override {
    inner_.synthesize(name, shape, dtype, out);
    recorded_.emplace_back(name, *out);
    return true;
  }
  const std::vector<std::pair<std::string, Tensor>>& recorded() const { return recorded_; }

 private:
  SyntheticSource inner_;
  mutable std::vector<std::pair<std::string, Tensor>> recorded_;
};

// How matrix weights are bound: the float type a synthetic source makes them in, and an
// optional conversion of what a checkpoint stores (bf16 halves the bytes a step reads).
struct MatrixPolicy {
  enum class Convert { Keep, ToBf16, ToF32 };
  DType synth = DType::F32;
  Convert convert = Convert::Keep;
};
// The raw tensor converted as the policy says (a view when nothing changes).
Tensor apply_policy(const Tensor& raw, const MatrixPolicy& p);

// Binds tensors by name. A missing tensor, a wrong shape or a non-float dtype fails with a
// message naming the tensor, the expected and the actual shape.
class WeightBinder {
 public:
  explicit WeightBinder(const WeightSource& src) : src_(src) {}
  // The first of `names` present in the source (alternative spellings of one tensor).
  // `synth` is the float type a synthetic source makes it in.
  Tensor take(const std::vector<std::string>& names, const Shape& shape, DType synth = DType::F32);
  Tensor take(const std::string& name, const Shape& shape, DType synth = DType::F32) {
    return take(std::vector<std::string>{name}, shape, synth);
  }
  bool has(const std::string& name) const;
  const WeightSource& source() const { return src_; }
  int64_t elements_taken() const { return taken_; }  // over every take so far

 private:
  const WeightSource& src_;
  int64_t taken_ = 0;
};

}  // namespace moshi
