#include "core/tensor.h"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <sstream>

#include "core/error.h"

namespace moshi {

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Tensor Tensor::zeros(DType dtype, Shape shape) {
  MOSHI_CHECK(shape_numel(shape) >= 0, "negative tensor size ", shape_str(shape));
  size_t bytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  // Large tensors (weights streamed every step) go on 2 MiB-aligned memory with transparent huge
  // pages requested: far fewer TLB misses while streaming hundreds of megabytes.
  constexpr size_t kHuge = 2u << 20;
  const size_t align = bytes >= kHuge ? kHuge : 64;
  size_t alloc = (bytes + align - 1) / align * align;
  if (alloc == 0) alloc = 64;
  void* p = std::aligned_alloc(align, alloc);
  if (!p) fail("out of memory allocating ", alloc, " bytes for a tensor of shape ", shape_str(shape));
  if (align == kHuge) madvise(p, alloc, MADV_HUGEPAGE);
  std::memset(p, 0, alloc);
  std::shared_ptr<void> storage(p, [](void* q) { std::free(q); });
  return Tensor(storage, p, dtype, std::move(shape));
}

Tensor Tensor::reshape(Shape shape) const {
  MOSHI_CHECK(shape_numel(shape) == numel(), "cannot reshape ", shape_str(shape_), " to ",
              shape_str(shape));
  return Tensor(storage_, data_, dtype_, std::move(shape), device_);
}

Tensor Tensor::slice0(int64_t begin, int64_t end) const {
  MOSHI_CHECK(ndim() >= 1 && begin >= 0 && begin <= end && end <= shape_[0], "bad slice [", begin,
              ", ", end, ") of ", shape_str(shape_));
  Shape s = shape_;
  s[0] = end - begin;
  size_t row = static_cast<size_t>(numel() / (shape_[0] ? shape_[0] : 1)) * dtype_size(dtype_);
  return Tensor(storage_, static_cast<char*>(data_) + row * begin, dtype_, std::move(s), device_);
}

Tensor Tensor::clone() const {
  MOSHI_CHECK(device_ == Device::CPU, "clone() of a device tensor");
  Tensor t = zeros(dtype_, shape_);
  if (nbytes()) std::memcpy(t.data(), data_, nbytes());
  return t;
}

}  // namespace moshi
