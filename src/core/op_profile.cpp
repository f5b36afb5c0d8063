#include "core/op_profile.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace moshi {

namespace {
struct Entry {
  double seconds = 0, flops = 0;
  long calls = 0;
};
struct Profile {
  std::mutex mu;
  std::map<std::string, Entry> ops;
  ~Profile() {
    std::vector<std::pair<std::string, Entry>> v(ops.begin(), ops.end());
    std::sort(v.begin(), v.end(), [](auto& a, auto& b) { return a.second.seconds > b.second.seconds; });
    std::fprintf(stderr, "%-24s %10s %10s %10s\n", "op (MOSHI_PROFILE_OPS)", "calls", "total ms", "GFLOP/s");
    for (auto& [name, e] : v)
      std::fprintf(stderr, "%-24s %10ld %10.1f %10.1f\n", name.c_str(), e.calls, e.seconds * 1e3,
                   e.seconds > 0 ? e.flops / e.seconds / 1e9 : 0.0);
  }
};
Profile& profile() {
  static Profile p;
  return p;
}
}  // namespace

bool op_profile_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("MOSHI_PROFILE_OPS");
    const bool b = v && std::string(v) == "1";
    if (b) std::fprintf(stderr, "moshi-rt: MOSHI_PROFILE_OPS=1: timing every op (debug)\n");
    return b;
  }();
  return on;
}

void op_profile_add(const char* op, double seconds, double flops) {
  Profile& p = profile();
  std::lock_guard<std::mutex> lk(p.mu);
  Entry& e = p.ops[op];
  e.seconds += seconds;
  e.flops += flops;
  ++e.calls;
}

}  // namespace moshi
