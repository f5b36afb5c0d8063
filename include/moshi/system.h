// moshi-rt public API: facts about the machine that benchmarks report beside their timings.
#pragma once
#include <cstddef>
#include <string>

namespace moshi {

// Measured main-memory read bandwidth in GB/s: `threads` threads each summing their share of a
// buffer of `bytes` (larger than any cache), best of a few passes.
double measure_read_bandwidth_gbps(int threads = 1, size_t bytes = size_t(512) << 20);

// "CPU model, N cores".
std::string machine_description();

// Lower-case hex SHA-256 of a file's bytes. Throws moshi::Error if it cannot be read.
std::string file_sha256(const std::string& path);

}  // namespace moshi
