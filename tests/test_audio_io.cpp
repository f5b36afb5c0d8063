#include "moshi/audio.h"

#include <gtest/gtest.h>
#include <sndfile.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "moshi/error.h"

namespace fs = std::filesystem;

namespace {

constexpr double kPi = 3.14159265358979323846;

std::vector<float> sine(long long n, double freq, int rate, double amp) {
  std::vector<float> out(static_cast<size_t>(n));
  for (long long i = 0; i < n; ++i) out[i] = static_cast<float>(amp * std::sin(2 * kPi * freq * i / rate));
  return out;
}

// Writes a file in any libsndfile format, so tests don't depend on write_wav for inputs.
void write_with_sndfile(const std::string& path, int format, int rate, int channels,
                        const std::vector<float>& interleaved) {
  SF_INFO info{};
  info.samplerate = rate;
  info.channels = channels;
  info.format = format;
  SNDFILE* f = sf_open(path.c_str(), SFM_WRITE, &info);
  ASSERT_NE(f, nullptr) << sf_strerror(nullptr);
  const sf_count_t frames = static_cast<sf_count_t>(interleaved.size()) / channels;
  EXPECT_EQ(sf_writef_float(f, interleaved.data(), frames), frames);
  EXPECT_EQ(sf_close(f), 0);
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const moshi::Error& e) {
    return e.what();
  }
  return "<no moshi::Error thrown>";
}

class AudioIoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    const auto* t = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::path(::testing::TempDir()) /
           ("moshi_audio_io_" + std::to_string(getpid()) + "_" + std::to_string(counter++) + "_" + t->name());
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

TEST_F(AudioIoTest, RoundTrip24kMonoFloatIsExact) {
  std::vector<float> in = sine(24000, 440.0, 24000, 0.7);
  in[5] = 1.5f;  // float WAV must not clip
  in[6] = -2.25f;
  const std::string p = path("mono.wav");
  moshi::write_wav(p, in.data(), static_cast<long long>(in.size()), 24000);
  EXPECT_FALSE(fs::exists(p + ".tmp"));

  const moshi::AudioData d = moshi::read_audio(p, 24000);
  EXPECT_EQ(d.samples, in);
  EXPECT_EQ(d.source.sample_rate, 24000);
  EXPECT_EQ(d.source.channels, 1);
  EXPECT_EQ(d.source.frames, 24000);
  EXPECT_EQ(d.source.format, "WAV");
  EXPECT_TRUE(d.conversion.empty()) << d.conversion;
}

TEST_F(AudioIoTest, WriteWavOverwritesExistingFile) {
  const std::string p = path("over.wav");
  std::vector<float> a(100, 0.25f), b(50, -0.5f);
  moshi::write_wav(p, a.data(), 100, 24000);
  moshi::write_wav(p, b.data(), 50, 24000);
  EXPECT_EQ(moshi::read_audio(p).samples, b);
}

TEST_F(AudioIoTest, Stereo48kDownmixesAndResamplesTo24k) {
  const long long n = 48000 * 2 + 1;  // odd length: exercises round-half-up of the output length
  const std::vector<float> left = sine(n, 440.0, 48000, 0.6), right = sine(n, 440.0, 48000, 0.2);
  std::vector<float> inter(2 * n);
  for (long long i = 0; i < n; ++i) {
    inter[2 * i] = left[i];
    inter[2 * i + 1] = right[i];
  }
  const std::string p = path("stereo48k.wav");
  moshi::write_wav(p, inter.data(), n, 48000, 2);

  const moshi::AudioData d = moshi::read_audio(p);
  EXPECT_EQ(d.source.sample_rate, 48000);
  EXPECT_EQ(d.source.channels, 2);
  EXPECT_EQ(d.source.frames, n);
  ASSERT_EQ(static_cast<long long>(d.samples.size()), (n + 1) / 2);
  EXPECT_NE(d.conversion.find("48000"), std::string::npos) << d.conversion;
  EXPECT_NE(d.conversion.find("stereo"), std::string::npos) << d.conversion;
  EXPECT_NE(d.conversion.find("24000"), std::string::npos) << d.conversion;

  // Downmix averages: 0.4 amplitude. Project onto sin/cos away from the edges; a non-zero cos
  // term would mean the resampler's delay was not compensated.
  const double expected_amp = 0.4;
  double s = 0, c = 0;
  const long long lo = 2400, hi = 24000 * 2 - 2400;
  for (long long i = lo; i < hi; ++i) {
    const double ph = 2 * kPi * 440.0 * i / 24000;
    s += d.samples[i] * std::sin(ph);
    c += d.samples[i] * std::cos(ph);
  }
  const double amp = 2 * std::hypot(s, c) / (hi - lo);
  EXPECT_NEAR(amp, expected_amp, 0.01 * expected_amp);
  EXPECT_NEAR(2 * c / (hi - lo), 0.0, 1e-3);
  for (long long i = lo; i < hi; i += 997)
    EXPECT_NEAR(d.samples[i], expected_amp * std::sin(2 * kPi * 440.0 * i / 24000), 1e-3) << i;
}

TEST_F(AudioIoTest, Reads16kFlac) {
  const long long n = 16000;
  const std::vector<float> in = sine(n, 300.0, 16000, 0.5);
  const std::string p = path("in.flac");
  write_with_sndfile(p, SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 16000, 1, in);

  const moshi::AudioData same = moshi::read_audio(p, 16000);
  EXPECT_EQ(same.source.format, "FLAC");
  EXPECT_TRUE(same.conversion.empty());
  ASSERT_EQ(same.samples.size(), in.size());
  for (size_t i = 0; i < in.size(); ++i) EXPECT_NEAR(same.samples[i], in[i], 1.0 / 32768) << i;

  const moshi::AudioData up = moshi::read_audio(p, 24000);
  EXPECT_EQ(up.source.sample_rate, 16000);
  EXPECT_EQ(up.samples.size(), 24000u);
  EXPECT_NE(up.conversion.find("16000 Hz mono -> 24000 Hz mono"), std::string::npos) << up.conversion;
}

TEST_F(AudioIoTest, ReadsOggVorbisWhenSupported) {
  SF_INFO probe{};
  probe.samplerate = 24000;
  probe.channels = 1;
  probe.format = SF_FORMAT_OGG | SF_FORMAT_VORBIS;
  if (!sf_format_check(&probe)) GTEST_SKIP() << "libsndfile built without Vorbis";
  const std::string p = path("in.ogg");
  write_with_sndfile(p, probe.format, 24000, 1, sine(24000, 440.0, 24000, 0.5));
  const moshi::AudioData d = moshi::read_audio(p);
  EXPECT_EQ(d.source.format, "OGG");
  EXPECT_EQ(d.samples.size(), 24000u);
}

TEST_F(AudioIoTest, Input44k1HasExactResampledLength) {
  for (long long n : {44100LL, 44100LL * 3 + 7, 1LL, 441LL}) {
    const std::string p = path("in44k_" + std::to_string(n) + ".wav");
    const std::vector<float> in = sine(n, 1000.0, 44100, 0.3);
    moshi::write_wav(p, in.data(), n, 44100, 1, true);
    const moshi::AudioData d = moshi::read_audio(p);
    const long long expected = static_cast<long long>(std::llround(n * 24000.0 / 44100.0));
    EXPECT_EQ(static_cast<long long>(d.samples.size()), expected) << n;
    EXPECT_EQ(moshi::resampled_length(n, 44100, 24000), expected) << n;
  }
}

TEST_F(AudioIoTest, ResampleEdgeCases) {
  const std::vector<float> in = {0.1f, -0.2f, 0.3f};
  EXPECT_EQ(moshi::resample(in, 24000, 24000), in);
  EXPECT_TRUE(moshi::resample({}, 48000, 24000).empty());
  EXPECT_EQ(moshi::resample(in, 8000, 24000).size(), 9u);
  EXPECT_THROW(moshi::resample(in, 0, 24000), moshi::Error);
  EXPECT_THROW(moshi::resample(in, 24000, 100000000), moshi::Error);
}

TEST_F(AudioIoTest, MissingFileThrows) {
  const std::string msg = error_of([&] { moshi::read_audio(path("nope.wav")); });
  EXPECT_NE(msg.find("not found"), std::string::npos) << msg;
  EXPECT_NE(msg.find("nope.wav"), std::string::npos) << msg;
}

TEST_F(AudioIoTest, TextFileRenamedWavThrows) {
  const std::string p = path("fake.wav");
  std::ofstream(p) << "this is definitely not a RIFF file\n";
  const std::string msg = error_of([&] { moshi::read_audio(p); });
  EXPECT_NE(msg.find("cannot read audio file"), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
}

TEST_F(AudioIoTest, ZeroLengthWavThrows) {
  const std::string p = path("empty.wav");
  moshi::write_wav(p, nullptr, 0, 24000);
  const std::string msg = error_of([&] { moshi::read_audio(p); });
  EXPECT_NE(msg.find("contains no audio samples"), std::string::npos) << msg;
}

TEST_F(AudioIoTest, AbsurdRatesThrow) {
  std::vector<float> x(10, 0.0f);
  EXPECT_THROW(moshi::write_wav(path("a.wav"), x.data(), 10, 50000000), moshi::Error);
  EXPECT_FALSE(fs::exists(path("a.wav.tmp")));
  moshi::write_wav(path("ok.wav"), x.data(), 10, 24000);
  EXPECT_THROW(moshi::read_audio(path("ok.wav"), 0), moshi::Error);

  // Patch the header's rate (libsndfile writes "fmt " first, rate at byte 24) to 5 MHz.
  const std::string p = path("fast.wav");
  moshi::write_wav(p, x.data(), 10, 24000);
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  char tag[4];
  f.seekg(12);
  f.read(tag, 4);
  ASSERT_EQ(std::string(tag, 4), "fmt ");
  const uint32_t rate = 5000000;
  const unsigned char le[4] = {rate & 0xff, (rate >> 8) & 0xff, (rate >> 16) & 0xff, rate >> 24};
  f.seekp(24);
  f.write(reinterpret_cast<const char*>(le), 4);
  f.close();
  const std::string msg = error_of([&] { moshi::read_audio(p); });
  EXPECT_NE(msg.find("5000000"), std::string::npos) << msg;
}

TEST_F(AudioIoTest, Pcm16WriteClamps) {
  const std::vector<float> in = {2.0f, -3.0f, 0.5f, 1.0f, -1.0f, 0.0f, NAN};
  const std::string p = path("pcm16.wav");
  moshi::write_wav(p, in.data(), static_cast<long long>(in.size()), 24000, 1, true);

  SF_INFO info{};
  SNDFILE* f = sf_open(p.c_str(), SFM_READ, &info);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(info.format, SF_FORMAT_WAV | SF_FORMAT_PCM_16);
  std::vector<short> s(in.size());
  ASSERT_EQ(sf_readf_short(f, s.data(), static_cast<sf_count_t>(s.size())), static_cast<sf_count_t>(s.size()));
  sf_close(f);
  EXPECT_GE(s[0], 32766);   // 2.0 clamped to full scale, not wrapped negative
  EXPECT_LE(s[1], -32767);  // -3.0 clamped
  EXPECT_NEAR(s[2], 16384, 1);
  EXPECT_EQ(s[3], s[0]);
  EXPECT_EQ(s[4], s[1]);
  EXPECT_EQ(s[5], 0);
  EXPECT_EQ(s[6], 0);  // NaN becomes silence rather than undefined int conversion
}

TEST_F(AudioIoTest, WriteToMissingDirectoryThrows) {
  std::vector<float> x(10, 0.0f);
  const std::string msg = error_of([&] { moshi::write_wav(path("no/such/dir/out.wav"), x.data(), 10, 24000); });
  EXPECT_NE(msg.find("cannot create WAV file"), std::string::npos) << msg;
}

}  // namespace
