// A small fixed pool of worker threads that runs parallel-for loops for the CPU backend.
//
// Several callers may run loops at the same time: each loop is a job in a shared queue, the calling
// thread always works on its own job too (so a loop finishes even when every worker is busy elsewhere),
// and idle workers help with whichever job is oldest. Tasks of one job are claimed with an atomic
// counter, so the split of work never depends on timing, only who runs a task does.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace moe {

class ThreadPool {
 public:
  // Total parallelism `threads` (>= 1): the caller plus threads-1 workers.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs task(i) for every i in [0, count) and returns when all have finished. The first exception
  // thrown by a task is rethrown here (the other tasks still run).
  void parallel_for(int64_t count, const std::function<void(int64_t)>& task);

 private:
  struct Job;
  void worker_loop();
  static void run_tasks(Job& job);

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace moe
