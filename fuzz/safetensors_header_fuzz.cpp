// libFuzzer target: the safetensors header parser must reject any byte string with a
// moshi::Error, never crash, hang or read out of bounds.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "weights/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    moshi::SafetensorsHeader h = moshi::parse_safetensors_header(data, size, "fuzz");
    // Whatever was accepted must lie inside the buffer.
    for (const auto& [name, info] : h.tensors) {
      if (h.data_offset + info.end > size) __builtin_trap();
    }
  } catch (const moshi::Error&) {
  }
  return 0;
}
