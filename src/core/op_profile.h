// Debug aid: per-op wall time, on only when MOSHI_PROFILE_OPS=1 is set (read once, logged).
// Prints a table to stderr at exit. Costs one branch per op when off.
#pragma once
#include <chrono>

namespace moshi {

bool op_profile_enabled();
void op_profile_add(const char* op, double seconds, double flops);

class OpTimer {
 public:
  explicit OpTimer(const char* op, double flops = 0) : op_(op), flops_(flops), on_(op_profile_enabled()) {
    if (on_) t0_ = std::chrono::steady_clock::now();
  }
  ~OpTimer() {
    if (on_) op_profile_add(op_, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count(), flops_);
  }

 private:
  const char* op_;
  double flops_;
  bool on_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace moshi
