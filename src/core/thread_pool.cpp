#include "core/thread_pool.h"

namespace moshi {

namespace {
thread_local bool t_in_pool = false;
}

ThreadPool::ThreadPool(int threads) {
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker_loop() {
  t_in_pool = true;
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(int)>* job;
    int n;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      job = job_;
      n = job_n_;
    }
    for (int i = next_.fetch_add(1); i < n; i = next_.fetch_add(1)) (*job)(i);
    {
      // Every worker reports each generation, so none can straggle into the next job.
      std::lock_guard<std::mutex> lk(mu_);
      if (++active_ == static_cast<int>(workers_.size())) done_cv_.notify_all();
    }
  }
}

void ThreadPool::parallel_for(int n, const std::function<void(int)>& fn) {
  if (n <= 0) return;
  if (workers_.empty() || n == 1 || t_in_pool) {
    for (int i = 0; i < n; ++i) fn(i);
    return;
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    job_ = &fn;
    job_n_ = n;
    next_.store(0);
    active_ = 0;
    ++generation_;
  }
  cv_.notify_all();
  t_in_pool = true;
  for (int i = next_.fetch_add(1); i < n; i = next_.fetch_add(1)) fn(i);
  t_in_pool = false;
  std::unique_lock<std::mutex> lk(mu_);
  done_cv_.wait(lk, [&] { return active_ == static_cast<int>(workers_.size()); });
  job_ = nullptr;
}

}  // namespace moshi
