// A fixed pool of worker threads for data-parallel loops. The calling thread takes part, so a
// pool of n threads runs n-1 workers. parallel_for blocks until every task has run.
// Workers (and the caller, waiting for them) spin briefly before sleeping: a streaming step
// issues hundreds of small parallel ops, and waking a sleeping thread costs more than most.
#pragma once
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace moshi {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }
  // Runs fn(i) for i in [0, n), spread over the pool; nested calls, and calls made while
  // another thread's job runs, run inline. Safe to call from several threads.
  void parallel_for(int n, const std::function<void(int)>& fn);

 private:
  void worker_loop();
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::mutex call_mu_;  // held by the caller whose job the workers run
  std::condition_variable cv_, done_cv_;
  const std::function<void(int)>* job_ = nullptr;
  std::atomic<int> job_n_{0};
  std::atomic<int> next_{0};
  std::atomic<int> done_{0};         // workers finished with the current generation
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stop_{false};
};

// Splits [0, n) into `parts` nearly equal ranges, aligned to `align`; returns range i.
inline void split_range(int64_t n, int parts, int i, int64_t align, int64_t* b, int64_t* e) {
  int64_t blocks = (n + align - 1) / align;
  int64_t per = blocks / parts, rem = blocks % parts;
  int64_t bb = i * per + (i < rem ? i : rem);
  int64_t eb = bb + per + (i < rem ? 1 : 0);
  *b = std::min(n, bb * align);
  *e = std::min(n, eb * align);
}

}  // namespace moshi
