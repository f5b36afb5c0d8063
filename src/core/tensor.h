// A small tensor: element type, shape and a pointer into storage that it may share.
// Row-major and contiguous. Storage can be host memory, a mapped file or device memory
// (the `device` tag says which); views share the storage's lifetime.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace moshi {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);  // "[2, 3, 4]"
int64_t shape_numel(const Shape& s);

enum class Device : uint8_t { CPU, CUDA };

class Tensor {
 public:
  Tensor() = default;
  Tensor(std::shared_ptr<void> storage, void* data, DType dtype, Shape shape,
         Device device = Device::CPU)
      : storage_(std::move(storage)), data_(data), dtype_(dtype), shape_(std::move(shape)),
        device_(device) {}

  // Fresh zero-filled host tensor.
  static Tensor zeros(DType dtype, Shape shape);
  static Tensor zeros_f32(Shape shape) { return zeros(DType::F32, std::move(shape)); }

  bool defined() const { return storage_ != nullptr; }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_[i < 0 ? shape_.size() + i : i]; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }

  void* data() const { return data_; }
  template <typename T> T* ptr() const { return static_cast<T*>(data_); }
  float* f32() const { return ptr<float>(); }
  int64_t* i64() const { return ptr<int64_t>(); }

  // Same storage, new shape (element count must match).
  Tensor reshape(Shape shape) const;
  // Rows [begin, end) of the leading dimension, sharing storage.
  Tensor slice0(int64_t begin, int64_t end) const;
  // Deep copy into fresh host memory.
  Tensor clone() const;

 private:
  std::shared_ptr<void> storage_;
  void* data_ = nullptr;
  DType dtype_ = DType::F32;
  Shape shape_;
  Device device_ = Device::CPU;
};

}  // namespace moshi
