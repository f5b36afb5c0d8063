#include "core/thread_pool.h"

namespace moshi {

namespace {
thread_local bool t_in_pool = false;
// Spin this many pause instructions (tens of microseconds) before sleeping: long enough to
// catch the next op of a streaming step, short enough not to starve others when the machine
// is oversubscribed (spinning on a worker that is not scheduled only burns the core it needs).
constexpr int kSpinIterations = 4000;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}
}  // namespace

ThreadPool::ThreadPool(int threads) {
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_.store(true);
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker_loop() {
  t_in_pool = true;
  uint64_t seen = 0;
  for (;;) {
    for (int i = 0; i < kSpinIterations && generation_.load(std::memory_order_acquire) == seen && !stop_.load(); ++i)
      cpu_relax();
    if (generation_.load(std::memory_order_acquire) == seen && !stop_.load()) {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stop_.load() || generation_.load() != seen; });
    }
    if (stop_.load()) return;
    seen = generation_.load(std::memory_order_acquire);
    const std::function<void(int)>* job = job_;
    const int n = job_n_.load();
    for (int i = next_.fetch_add(1); i < n; i = next_.fetch_add(1)) (*job)(i);
    // Every worker reports each generation, so none can straggle into the next job.
    if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == static_cast<int>(workers_.size())) {
      std::lock_guard<std::mutex> lk(mu_);
      done_cv_.notify_one();
    }
  }
}

void ThreadPool::parallel_for(int n, const std::function<void(int)>& fn) {
  if (n <= 0) return;
  // One job at a time: a second caller (another session's thread) runs its tasks inline
  // rather than wait, with the same partition, hence the same results.
  std::unique_lock<std::mutex> caller(call_mu_, std::try_to_lock);
  if (workers_.empty() || n == 1 || t_in_pool || !caller.owns_lock()) {
    for (int i = 0; i < n; ++i) fn(i);
    return;
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    job_ = &fn;
    job_n_.store(n);
    next_.store(0);
    done_.store(0);
    generation_.fetch_add(1, std::memory_order_release);
  }
  cv_.notify_all();
  t_in_pool = true;
  for (int i = next_.fetch_add(1); i < n; i = next_.fetch_add(1)) fn(i);
  t_in_pool = false;
  const int workers = static_cast<int>(workers_.size());
  for (int i = 0; i < kSpinIterations && done_.load(std::memory_order_acquire) < workers; ++i) cpu_relax();
  if (done_.load(std::memory_order_acquire) < workers) {
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [&] { return done_.load() >= workers; });
  }
  job_ = nullptr;
}

}  // namespace moshi
