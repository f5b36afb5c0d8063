#include "weights/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace moshi {

using json = nlohmann::json;

namespace {

constexpr uint64_t kMaxHeader = 100ull << 20;  // the format's own limit is 100 MB

bool to_u64(const json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    *out = static_cast<uint64_t>(v.get<int64_t>());
    return true;
  }
  return false;
}

}  // namespace

SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, size_t size, const std::string& what) {
  MOSHI_CHECK(size >= 8, what, ": not a safetensors file (", size, " bytes, shorter than the 8-byte header length)");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
  MOSHI_CHECK(n >= 2 && n <= kMaxHeader, what, ": not a safetensors file (header length ", n, " is invalid)");
  MOSHI_CHECK(n <= size - 8, what, ": truncated safetensors file (header says ", n, " bytes, file has ", size - 8,
              " after the length)");
  const char* h = reinterpret_cast<const char*>(bytes + 8);
  json j = json::parse(h, h + n, nullptr, /*allow_exceptions=*/false);
  MOSHI_CHECK(!j.is_discarded(), what, ": corrupt safetensors header (not valid JSON)");
  MOSHI_CHECK(j.is_object(), what, ": corrupt safetensors header (not a JSON object)");

  SafetensorsHeader out;
  out.data_offset = 8 + n;
  const uint64_t data_size = size - out.data_offset;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      MOSHI_CHECK(v.is_object(), what, ": corrupt safetensors header (__metadata__ is not an object)");
      for (auto m = v.begin(); m != v.end(); ++m) {
        MOSHI_CHECK(m.value().is_string(), what, ": corrupt safetensors header (metadata '", m.key(),
                    "' is not a string)");
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    MOSHI_CHECK(v.is_object(), what, ": corrupt safetensors header (entry '", name, "' is not an object)");
    auto dt = v.find("dtype");
    auto sh = v.find("shape");
    auto off = v.find("data_offsets");
    MOSHI_CHECK(dt != v.end() && sh != v.end() && off != v.end(), what, ": corrupt safetensors header (tensor '",
                name, "' lacks dtype, shape or data_offsets)");
    MOSHI_CHECK(dt->is_string(), what, ": corrupt safetensors header (tensor '", name, "': dtype is not a string)");
    TensorInfo info;
    MOSHI_CHECK(dtype_from_name(dt->get<std::string>(), &info.dtype), what, ": tensor '", name,
                "' has unsupported dtype ", dt->get<std::string>());
    MOSHI_CHECK(sh->is_array() && sh->size() <= 8, what, ": corrupt safetensors header (tensor '", name,
                "': bad shape)");
    uint64_t numel = 1;
    for (const json& d : *sh) {
      uint64_t dim = 0;
      MOSHI_CHECK(to_u64(d, &dim), what, ": corrupt safetensors header (tensor '", name, "': bad dimension)");
      MOSHI_CHECK(dim <= (1ull << 40) && (dim == 0 || numel <= (1ull << 48) / dim), what,
                  ": corrupt safetensors header (tensor '", name, "': shape too large)");
      numel *= dim;
      info.shape.push_back(static_cast<int64_t>(dim));
    }
    MOSHI_CHECK(off->is_array() && off->size() == 2 && to_u64((*off)[0], &info.begin) &&
                    to_u64((*off)[1], &info.end),
                what, ": corrupt safetensors header (tensor '", name, "': bad data_offsets)");
    MOSHI_CHECK(info.begin <= info.end && info.end <= data_size, what, ": truncated or corrupt safetensors file (tensor '",
                name, "' spans bytes ", info.begin, "..", info.end, " of a ", data_size, "-byte data region)");
    MOSHI_CHECK(info.end - info.begin == numel * dtype_size(info.dtype), what, ": corrupt safetensors header (tensor '",
                name, "': ", info.end - info.begin, " bytes for shape ", shape_str(info.shape), " of ",
                dtype_name(info.dtype), ")");
    out.tensors.emplace(name, std::move(info));
  }
  return out;
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, ": cannot open (", std::strerror(errno), ")");
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, ": not a regular file");
  }
  size_t size = static_cast<size_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    fail(path, ": not a safetensors file (", size, " bytes)");
  }
  void* p = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) fail(path, ": cannot map (", std::strerror(errno), ")");
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->map_ = std::shared_ptr<void>(p, [size](void* q) { munmap(q, size); });
  f->base_ = static_cast<const uint8_t*>(p);
  f->size_ = size;
  f->header_ = parse_safetensors_header(f->base_, size, path);
  return f;
}

SafetensorsFile::~SafetensorsFile() = default;

const TensorInfo* SafetensorsFile::info(const std::string& name) const {
  auto it = header_.tensors.find(name);
  return it == header_.tensors.end() ? nullptr : &it->second;
}

Tensor SafetensorsFile::get(const std::string& name) const {
  const TensorInfo* ti = info(name);
  MOSHI_CHECK(ti, path_, ": no tensor named '", name, "'");
  void* data = const_cast<uint8_t*>(base_ + header_.data_offset + ti->begin);
  return Tensor(map_, data, ti->dtype, ti->shape);
}

Tensor SafetensorsFile::get_f32(const std::string& name) const { return to_f32(get(name)); }
Tensor SafetensorsFile::get_i64(const std::string& name) const { return to_i64(get(name)); }

Tensor to_f32(const Tensor& t) {
  Tensor out = Tensor::zeros(DType::F32, t.shape());
  float* o = out.f32();
  const int64_t n = t.numel();
  switch (t.dtype()) {
    case DType::F32: std::memcpy(o, t.data(), n * 4); break;
    case DType::BF16: {
      const uint8_t* p = t.ptr<uint8_t>();
      for (int64_t i = 0; i < n; ++i) { uint16_t h; std::memcpy(&h, p + 2 * i, 2); o[i] = bf16_to_f32(h); }
      break;
    }
    case DType::F16: {
      const uint8_t* p = t.ptr<uint8_t>();
      for (int64_t i = 0; i < n; ++i) { uint16_t h; std::memcpy(&h, p + 2 * i, 2); o[i] = f16_to_f32(h); }
      break;
    }
    default: fail("expected a floating-point tensor, got ", dtype_name(t.dtype()));
  }
  return out;
}

Tensor to_i64(const Tensor& t) {
  Tensor out = Tensor::zeros(DType::I64, t.shape());
  int64_t* o = out.i64();
  const int64_t n = t.numel();
  const uint8_t* p = t.ptr<uint8_t>();
  switch (t.dtype()) {
    case DType::I64: std::memcpy(o, p, n * 8); break;
    case DType::I32: for (int64_t i = 0; i < n; ++i) { int32_t v; std::memcpy(&v, p + 4 * i, 4); o[i] = v; } break;
    case DType::Bool:
    case DType::U8: for (int64_t i = 0; i < n; ++i) o[i] = p[i]; break;
    default: fail("expected an integer tensor, got ", dtype_name(t.dtype()));
  }
  return out;
}

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  json h = json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  uint64_t off = 0;
  for (const auto& [name, t] : tensors) {
    MOSHI_CHECK(t.device() == Device::CPU, "write_safetensors: tensor '", name, "' is not on the host");
    h[name] = {{"dtype", dtype_name(t.dtype())}, {"shape", t.shape()}, {"data_offsets", {off, off + t.nbytes()}}};
    off += t.nbytes();
  }
  std::string hs = h.dump();
  while (hs.size() % 8) hs.push_back(' ');
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail(path, ": cannot write (", std::strerror(errno), ")");
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(hs.size()) >> (8 * i));
  bool ok = std::fwrite(len, 1, 8, f) == 8 && std::fwrite(hs.data(), 1, hs.size(), f) == hs.size();
  for (const auto& [name, t] : tensors) {
    if (!ok) break;
    ok = t.nbytes() == 0 || std::fwrite(t.data(), 1, t.nbytes(), f) == t.nbytes();
  }
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    fail(path, ": write failed (", std::strerror(errno), ")");
  }
}

}  // namespace moshi
