// The counter-based uniform behind every sampled token (see sampling.h): a pure function of
// (seed, stream, step, site, index), written once for the host and the CUDA kernels alike so
// that both draw bit-identical values.
#pragma once
#include <cstdint>

#ifdef __CUDACC__
#define MOSHI_HOST_DEVICE __host__ __device__
#else
#define MOSHI_HOST_DEVICE
#endif

namespace moshi {

MOSHI_HOST_DEVICE inline uint64_t counter_mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

// Uniform in (0, 1) with 53 random bits.
MOSHI_HOST_DEVICE inline double counter_uniform_of(uint64_t seed, uint64_t stream, uint64_t step, uint64_t site,
                                                   uint64_t index) {
  uint64_t h = counter_mix(seed + 0x9e3779b97f4a7c15ull);
  h = counter_mix(h ^ (stream + 0x632be59bd9b4e019ull));
  h = counter_mix(h ^ (step + 0x8cb92ba72f3d8dd7ull));
  h = counter_mix(h ^ (site + 0xd6e8feb86659fd93ull));
  h = counter_mix(h ^ index);
  return (static_cast<double>(h >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

}  // namespace moshi
