// compare and doctor: agreement where there is nothing to find, and a seeded fault pinpointed
// to its op, stage and layer.
#include <gtest/gtest.h>

#include <cmath>

#include "moshi/audio.h"
#include "test_util.h"
#include "weights/safetensors.h"

using namespace moshi;
using testutil::run_cli;

namespace {
std::string input() {
  static const std::string p = [] {
    const std::string path = testing::TempDir() + "moshi_diag_in_" + std::to_string(getpid()) + ".wav";
    std::vector<float> x(24000);
    for (size_t i = 0; i < x.size(); ++i) x[i] = 0.3f * std::sin(0.02f * i);
    write_wav(path, x.data(), static_cast<long long>(x.size()), 24000);
    return path;
  }();
  return p;
}
}  // namespace

TEST(Compare, SameConfigurationAgreesWithIdenticalHashes) {
  auto r = run_cli("compare --input " + input() + " --a cpu:f32 --b cpu:f32 --seed 4");
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("AGREE"), std::string::npos) << r.out;
  const auto a = r.out.find("sha256 a "), b = r.out.find("sha256 b ");
  ASSERT_NE(a, std::string::npos);
  ASSERT_NE(b, std::string::npos);
  EXPECT_EQ(r.out.substr(a + 9, 64), r.out.substr(b + 9, 64));
}

TEST(Compare, Bf16IsReportedWhereItFirstDiffers) {
  auto r = run_cli("compare --input " + input() + " --a cpu:f32 --b cpu:bf16 --greedy");
  EXPECT_TRUE(r.status == 0 || r.status == 3) << r.err;
  EXPECT_NE(r.out.find("lm text logits"), std::string::npos) << r.out;
  // bf16 weights change the LM (not the codec): the codes agree, the logits carry an error.
  EXPECT_NE(r.out.find("ok    mimi codes"), std::string::npos) << r.out;
  const auto l = r.out.find("lm text logits");
  ASSERT_NE(l, std::string::npos);
  EXPECT_EQ(r.out.substr(l, 80).find("max abs 0 "), std::string::npos) << r.out;
}

TEST(Compare, SeededFaultIsPinpointedToItsLayer) {
  const std::string dir = testing::TempDir() + "moshi_diag_dump_" + std::to_string(getpid());
  // The 4th rms_norm call of a step is layer 1's second norm of the temporal transformer.
  auto r = run_cli("compare --input " + input() + " --a cpu:f32 --b 'cpu!fault:rms_norm@3:f32' --steps 4 --dump " + dir);
  EXPECT_EQ(r.status, 3) << r.out << r.err;
  EXPECT_NE(r.out.find("DIVERGE"), std::string::npos);
  EXPECT_NE(r.out.find("first differing activation: step 0, lm.temporal.layer1 "), std::string::npos) << r.out;
  // The dumps hold both runs' activations under the same names.
  auto a = SafetensorsFile::open(dir + "/a.safetensors"), b = SafetensorsFile::open(dir + "/b.safetensors");
  EXPECT_TRUE(a->has("step0/lm.temporal.layer0"));
  EXPECT_TRUE(b->has("step0/lm.temporal.layer1"));
  EXPECT_TRUE(a->has("step0/mimi.enc.latent"));
  // A fault in the codec shows up at the codec, before the LM.
  r = run_cli("compare --input " + input() + " --a cpu:f32 --b 'cpu!fault:attention@1:f32' --steps 2 --dump " + dir);
  EXPECT_EQ(r.status, 3);
  EXPECT_NE(r.out.find("first differing activation: step 0, mimi.enc.transformer.layer1 "), std::string::npos) << r.out;
}

TEST(Doctor, CpuPassesAndAFaultFailsItsFamily) {
  auto r = run_cli("doctor --device cpu");
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_EQ(r.out.find("FAIL"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("PASS cpu      linear (bf16 weights)"), std::string::npos) << r.out;
  r = run_cli("doctor --device 'cpu!fault:rms_norm@*'");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("FAIL cpu!fault:rms_norm@* layer_norm / rms_norm"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("PASS cpu!fault:rms_norm@* conv1d"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("PASS cpu!fault:rms_norm@* rope + attention"), std::string::npos) << r.out;
}
