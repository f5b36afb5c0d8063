// safetensors reader/writer and the weight binder: round trips and every malformed-input path.
#include <unistd.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "core/error.h"
#include "weights/safetensors.h"
#include "weights/weight_source.h"

using namespace moshi;

namespace {

std::string tmp(const std::string& name) { return testing::TempDir() + "moshi_st_" + std::to_string(getpid()) + "_" + name; }

void write_raw(const std::string& path, const std::string& header, size_t data_bytes) {
  std::ofstream f(path, std::ios::binary);
  uint64_t n = header.size();
  f.write(reinterpret_cast<const char*>(&n), 8);
  f << header;
  std::string data(data_bytes, '\0');
  f << data;
}

std::string error_of(const std::string& path) {
  try {
    SafetensorsFile::open(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Safetensors, RoundTripAllDtypes) {
  Tensor f = Tensor::zeros(DType::F32, {2, 3});
  for (int i = 0; i < 6; ++i) f.f32()[i] = i * 0.5f - 1;
  Tensor bf = Tensor::zeros(DType::BF16, {4});
  const float vals[4] = {1.f, -2.5f, 0.15625f, 3e10f};
  for (int i = 0; i < 4; ++i) {
    uint16_t h = f32_to_bf16(vals[i]);
    std::memcpy(bf.ptr<uint8_t>() + 2 * i, &h, 2);
  }
  Tensor h16 = Tensor::zeros(DType::F16, {2});
  const uint16_t halfs[2] = {0x3c00, 0xc100};  // 1.0, -2.5
  std::memcpy(h16.data(), halfs, 4);
  Tensor i64 = Tensor::zeros(DType::I64, {3});
  i64.i64()[0] = -7;
  i64.i64()[2] = 1ll << 40;
  Tensor i32 = Tensor::zeros(DType::I32, {2});
  i32.ptr<int32_t>()[1] = -3;
  Tensor b = Tensor::zeros(DType::Bool, {2});
  b.ptr<uint8_t>()[1] = 1;
  const std::string p = tmp("rt.safetensors");
  write_safetensors(p, {{"f", f}, {"bf", bf}, {"h", h16}, {"i", i64}, {"j", i32}, {"b", b}}, {{"k", "v"}});
  auto st = SafetensorsFile::open(p);
  EXPECT_EQ(st->header().metadata.at("k"), "v");
  Tensor g = st->get_f32("f");
  EXPECT_EQ(g.shape(), (Shape{2, 3}));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(g.f32()[i], f.f32()[i]);
  Tensor gb = st->get_f32("bf");
  EXPECT_EQ(gb.f32()[0], 1.f);
  EXPECT_EQ(gb.f32()[1], -2.5f);
  EXPECT_EQ(gb.f32()[2], 0.15625f);
  Tensor gh = st->get_f32("h");
  EXPECT_EQ(gh.f32()[0], 1.f);
  EXPECT_EQ(gh.f32()[1], -2.5f);
  Tensor gi = st->get_i64("i");
  EXPECT_EQ(gi.i64()[0], -7);
  EXPECT_EQ(gi.i64()[2], 1ll << 40);
  EXPECT_EQ(st->get_i64("j").i64()[1], -3);
  EXPECT_EQ(st->get_i64("b").i64()[1], 1);
  EXPECT_THROW(st->get("nope"), Error);
}

TEST(Safetensors, Bf16RoundingIsNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  float x;
  uint32_t u = 0x3f808000;  // exactly halfway between two bf16 values, even below
  std::memcpy(&x, &u, 4);
  EXPECT_EQ(f32_to_bf16(x), 0x3f80);
  u = 0x3f818000;  // halfway, odd below -> rounds up
  std::memcpy(&x, &u, 4);
  EXPECT_EQ(f32_to_bf16(x), 0x3f82);
}

TEST(Safetensors, RejectsMalformedFiles) {
  EXPECT_NE(error_of(tmp("missing.safetensors")).find("cannot open"), std::string::npos);
  {
    std::ofstream f(tmp("short"), std::ios::binary);
    f << "abc";
  }
  EXPECT_NE(error_of(tmp("short")).find("not a safetensors file"), std::string::npos);
  write_raw(tmp("notjson"), "{not json}", 0);
  EXPECT_NE(error_of(tmp("notjson")).find("not valid JSON"), std::string::npos);
  write_raw(tmp("trunc"), R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8);
  EXPECT_NE(error_of(tmp("trunc")).find("truncated"), std::string::npos);
  write_raw(tmp("size"), R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", 16);
  EXPECT_NE(error_of(tmp("size")).find("bytes for shape"), std::string::npos);
  write_raw(tmp("dtype"), R"({"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}})", 1);
  EXPECT_NE(error_of(tmp("dtype")).find("unsupported dtype"), std::string::npos);
  write_raw(tmp("neg"), R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4);
  EXPECT_NE(error_of(tmp("neg")).find("bad dimension"), std::string::npos);
  write_raw(tmp("huge"), R"({"a":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,4]}})", 4);
  EXPECT_NE(error_of(tmp("huge")).find("too large"), std::string::npos);
  write_raw(tmp("order"), R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 8);
  EXPECT_NE(error_of(tmp("order")).find("spans bytes"), std::string::npos);
  write_raw(tmp("array"), R"([1,2])", 0);
  EXPECT_NE(error_of(tmp("array")).find("not a JSON object"), std::string::npos);
  // header length larger than the file
  {
    std::ofstream f(tmp("len"), std::ios::binary);
    uint64_t n = 1000;
    f.write(reinterpret_cast<const char*>(&n), 8);
    f << "{}";
  }
  EXPECT_NE(error_of(tmp("len")).find("truncated"), std::string::npos);
}

TEST(WeightBinder, NamesTensorAndShapesOnMismatch) {
  MemorySource src("test.safetensors");
  src.add("a.weight", Tensor::zeros_f32({4, 2}));
  src.add("ints", Tensor::zeros(DType::I64, {3}));
  WeightBinder wb(src);
  EXPECT_EQ(wb.take("a.weight", {4, 2}).shape(), (Shape{4, 2}));
  try {
    wb.take("a.weight", {2, 4});
    FAIL();
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("'a.weight' has shape [4, 2], expected [2, 4]"), std::string::npos) << m;
  }
  try {
    wb.take(std::vector<std::string>{"b.weight", "b.alt"}, Shape{3});
    FAIL();
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("missing tensor 'b.weight' (or 'b.alt') (expected shape [3])"), std::string::npos) << m;
  }
  EXPECT_THROW(wb.take("ints", {3}), Error);
  src.add("b.alt", Tensor::zeros_f32({3}));
  EXPECT_EQ(wb.take(std::vector<std::string>{"b.weight", "b.alt"}, Shape{3}).numel(), 3);
}

TEST(WeightBinder, SyntheticWeightsAreSeededAndShaped) {
  SyntheticSource s1(1), s2(1), s3(2);
  WeightBinder a(s1), b(s2), c(s3);
  Tensor x = a.take("layer.weight", {8, 16}), y = b.take("layer.weight", {8, 16}), z = c.take("layer.weight", {8, 16});
  ASSERT_EQ(x.shape(), (Shape{8, 16}));
  EXPECT_EQ(std::memcmp(x.data(), y.data(), x.nbytes()), 0);
  EXPECT_NE(std::memcmp(x.data(), z.data(), x.nbytes()), 0);
  EXPECT_EQ(a.take("norm1.weight", {4}).f32()[3], 1.f);
}
