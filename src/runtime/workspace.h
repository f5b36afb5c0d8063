// Named scratch tensors owned by a stream's state: allocated on first use, reused while the
// requested size fits, so the steady-state step allocates nothing.
#pragma once
#include <map>

#include "core/error.h"
#include "runtime/backend.h"

namespace moshi {

class Workspace {
 public:
  // A zero-initialised-at-allocation tensor of `shape`, valid until the next get() with the same id.
  Tensor& get(Backend& be, int id, DType dtype, const Shape& shape) {
    Slot& s = slots_[id];
    const int64_t n = shape_numel(shape);
    if (!s.buf.defined() || s.buf.numel() < n || s.buf.dtype() != dtype) {
      s.buf = be.empty(dtype, {n});
    }
    s.view = s.buf.slice0(0, n).reshape(shape);
    return s.view;
  }
  Tensor& f32(Backend& be, int id, const Shape& shape) { return get(be, id, DType::F32, shape); }

 private:
  struct Slot {
    Tensor buf, view;
  };
  std::map<int, Slot> slots_;
};

}  // namespace moshi
