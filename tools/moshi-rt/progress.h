// A one-line progress display on stderr, shown only when stderr is a terminal.
#pragma once
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

class Progress {
 public:
  Progress(std::string what, long long total, double seconds_per_item)
      : what_(std::move(what)), total_(total), item_s_(seconds_per_item), on_(isatty(2) && total > 1),
        start_(std::chrono::steady_clock::now()) {}
  void update(long long done) {
    if (!on_) return;
    const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double rtf = el > 0 ? done * item_s_ / el : 0;
    const double eta = done > 0 ? el * (total_ - done) / done : 0;
    std::fprintf(stderr, "\r%s: frame %lld/%lld, %.1fx real time, ETA %.0f s   ", what_.c_str(), done, total_, rtf, eta);
    if (done == total_) std::fprintf(stderr, "\n");
  }

 private:
  std::string what_;
  long long total_;
  double item_s_;
  bool on_;
  std::chrono::steady_clock::time_point start_;
};
