// safetensors files: a memory-mapped reader with a fully validated header, and a writer.
// Format: u64 little-endian header length N, N bytes of JSON
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the data region; offsets are relative to the data region.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace moshi {

struct TensorInfo {
  DType dtype;
  Shape shape;
  uint64_t begin = 0, end = 0;  // byte offsets in the data region
};

struct SafetensorsHeader {
  std::map<std::string, TensorInfo> tensors;
  std::map<std::string, std::string> metadata;
  uint64_t data_offset = 0;  // where the data region starts in the file
};

// Parses and validates the header of a safetensors image of `size` bytes. Throws moshi::Error
// with a one-line reason on anything malformed (never reads out of bounds). `what` names the
// file in messages.
SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, size_t size, const std::string& what);

class SafetensorsFile {
 public:
  // Maps the file read-only. Throws moshi::Error if it is missing, unreadable or malformed.
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);

  const std::string& path() const { return path_; }
  const SafetensorsHeader& header() const { return header_; }
  bool has(const std::string& name) const { return header_.tensors.count(name) != 0; }
  const TensorInfo* info(const std::string& name) const;
  // A view of the tensor's bytes in the mapping (shares the mapping's lifetime).
  Tensor get(const std::string& name) const;
  // The tensor converted to f32 (copied; F32/F16/BF16 sources) or i64 (I64/I32/Bool/U8 sources).
  Tensor get_f32(const std::string& name) const;
  Tensor get_i64(const std::string& name) const;

  ~SafetensorsFile();

 private:
  SafetensorsFile() = default;
  std::string path_;
  SafetensorsHeader header_;
  std::shared_ptr<void> map_;  // keeps the mapping alive for views
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
};

// Converts any float tensor (F32/F16/BF16) to a fresh f32 host tensor.
Tensor to_f32(const Tensor& t);
// Converts any integer/bool tensor to a fresh i64 host tensor.
Tensor to_i64(const Tensor& t);

// Writes host tensors (any dtype) plus string metadata. Atomic: writes PATH.tmp then renames.
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace moshi
