// Activation taps: an optional callback the models call with named intermediate tensors
// (device tensors; the callback downloads what it keeps). Used by `compare --dump` to find the
// first stage and layer where two runs part.
#pragma once
#include <functional>
#include <string>

#include "core/tensor.h"

namespace moshi {

using Tap = std::function<void(const std::string& name, const Tensor& t)>;

}  // namespace moshi
