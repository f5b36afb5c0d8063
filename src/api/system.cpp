#include "moshi/system.h"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "core/sha256.h"
#include "core/tensor.h"

namespace moshi {

namespace {
// Integer sums vectorise without reassociation concerns, so this loop runs at memory speed.
uint64_t sum_words(const uint64_t* p, size_t n) {
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += p[i];
    s1 += p[i + 1];
    s2 += p[i + 2];
    s3 += p[i + 3];
  }
  for (; i < n; ++i) s0 += p[i];
  return s0 + s1 + s2 + s3;
}
}  // namespace

double measure_read_bandwidth_gbps(int threads, size_t bytes) {
  if (threads < 1) threads = 1;
  const size_t words = bytes / 8;
  Tensor buf = Tensor::zeros(DType::U8, {static_cast<int64_t>(words * 8)});
  uint64_t* p = buf.ptr<uint64_t>();
  for (size_t i = 0; i < words; i += 512) p[i] = i;  // touch every page
  double best = 0;
  volatile uint64_t sink = 0;
  for (int pass = 0; pass < 4; ++pass) {
    std::vector<uint64_t> part(threads);
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> ts;
    for (int t = 1; t < threads; ++t)
      ts.emplace_back([&, t] { part[t] = sum_words(p + words * t / threads, words / threads); });
    part[0] = sum_words(p, words / threads);
    for (auto& t : ts) t.join();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (uint64_t v : part) sink = sink + v;
    if (pass > 0) best = std::max(best, static_cast<double>(words / threads * threads * 8) / s / 1e9);
  }
  return best;
}

std::string file_sha256(const std::string& path) { return sha256_file(path); }

std::string machine_description() {
  std::string model = "unknown CPU";
  if (FILE* f = std::fopen("/proc/cpuinfo", "r")) {
    char line[512];
    while (std::fgets(line, sizeof line, f)) {
      if (std::strncmp(line, "model name", 10) == 0) {
        if (const char* c = std::strchr(line, ':')) model = std::string(c + 2, std::strcspn(c + 2, "\n"));
        break;
      }
    }
    std::fclose(f);
  }
  return model + ", " + std::to_string(std::thread::hardware_concurrency()) + " cores";
}

}  // namespace moshi
