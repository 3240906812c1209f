// A fixed pool of worker threads for data-parallel loops (matmul rows, attention heads).
//
// A decode step issues a few hundred short parallel loops, so waking sleeping threads for each
// would cost more than the work: workers spin (with pause) for a while after each loop before
// they sleep on a condition variable, and the caller spins until its helpers are done.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace engine {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);  // n_threads <= 0: default_thread_count() (cpu_threads.h)
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs fn(begin, end) over [0, n) in contiguous chunks, about eight per thread, that the
  // threads (the caller's included) take from a shared counter, so a thread slowed by the
  // machine does not hold the others back; returns when all chunks are done. Not reentrant.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn);

  // fn(i) for every i in [0, n), through parallel_for's chunks (n == 1 runs inline).
  template <typename Fn>
  void for_each(int64_t n, const Fn& fn) {
    parallel_for(n, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) fn(i);
    });
  }

 private:
  void worker();
  void run_chunks();

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0;
  int64_t job_chunk_ = 1;
  std::atomic<int64_t> next_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace engine
