// Element types of tensors, as stored in checkpoints and on devices.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace moshi {

enum class DType : uint8_t { F32, F16, BF16, I64, I32, Bool, U8 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);  // safetensors spelling: "F32", "BF16", ...
bool dtype_from_name(const std::string& s, DType* out);

// bfloat16 <-> float. Round-to-nearest-even, NaN kept quiet.
inline float bf16_to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
float f16_to_f32(uint16_t h);

}  // namespace moshi
