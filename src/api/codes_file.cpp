#include "moshi/codes_file.h"

#include <cstring>

#include "core/error.h"
#include "weights/safetensors.h"

namespace moshi {

namespace {
constexpr const char* kFormat = "moshi-rt.codes.v1";

int64_t meta_int(const std::map<std::string, std::string>& m, const std::string& key, int64_t def,
                 const std::string& path) {
  auto it = m.find(key);
  if (it == m.end()) return def;
  try {
    size_t used = 0;
    const long long v = std::stoll(it->second, &used);
    MOSHI_CHECK(used == it->second.size(), "");
    return v;
  } catch (...) {
    fail(path, ": metadata '", key, "' = '", it->second, "' is not an integer");
  }
}
}  // namespace

void write_codes_file(const std::string& path, const CodesFile& c) {
  MOSHI_CHECK(static_cast<int64_t>(c.codes.size()) == c.num_codebooks * c.frames, "codes file: ", c.codes.size(),
              " codes for [", c.num_codebooks, ", ", c.frames, "]");
  Tensor t = Tensor::zeros(DType::I64, {1, c.num_codebooks, c.frames});
  std::memcpy(t.data(), c.codes.data(), t.nbytes());
  char fr[32];
  std::snprintf(fr, sizeof fr, "%g", c.frame_rate);
  write_safetensors(path, {{"codes", t}},
                    {{"format", kFormat},
                     {"sample_rate", std::to_string(c.sample_rate)},
                     {"frame_rate", fr},
                     {"frame_size", std::to_string(c.frame_size)},
                     {"num_codebooks", std::to_string(c.num_codebooks)},
                     {"samples", std::to_string(c.samples)},
                     {"source", c.source}});
}

CodesFile read_codes_file(const std::string& path) {
  auto f = SafetensorsFile::open(path);
  MOSHI_CHECK(f->has("codes"), path, ": not a codes file (no tensor named 'codes')");
  const TensorInfo* ti = f->info("codes");
  MOSHI_CHECK(ti->dtype == DType::I64 || ti->dtype == DType::I32, path, ": 'codes' has dtype ",
              dtype_name(ti->dtype), ", expected I64 or I32");
  Shape s = ti->shape;
  if (s.size() == 2) s.insert(s.begin(), 1);
  MOSHI_CHECK(s.size() == 3 && s[0] == 1 && s[1] >= 1 && s[2] >= 1, path, ": 'codes' has shape ",
              shape_str(ti->shape), ", expected [1, K, T] with K, T >= 1");
  const auto& m = f->header().metadata;
  CodesFile c;
  Tensor t = f->get_i64("codes");
  c.codes.assign(t.i64(), t.i64() + t.numel());
  c.num_codebooks = static_cast<int>(s[1]);
  c.frames = s[2];
  c.sample_rate = static_cast<int>(meta_int(m, "sample_rate", 24000, path));
  c.frame_size = static_cast<int>(meta_int(m, "frame_size", 1920, path));
  c.samples = meta_int(m, "samples", 0, path);
  MOSHI_CHECK(c.samples >= 0 && c.samples <= c.frames * c.frame_size, path, ": metadata samples = ", c.samples,
              " does not fit ", c.frames, " frames");
  if (auto it = m.find("frame_rate"); it != m.end()) c.frame_rate = std::atof(it->second.c_str());
  if (auto it = m.find("source"); it != m.end()) c.source = it->second;
  return c;
}

}  // namespace moshi
