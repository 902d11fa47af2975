// One thread that runs posted tasks in order: the worker's control plane (prepare loads, commit,
// release) runs here, off the io threads and one change at a time.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace moe {

class SerialExecutor {
 public:
  SerialExecutor();
  ~SerialExecutor();  // stop()
  SerialExecutor(const SerialExecutor&) = delete;
  SerialExecutor& operator=(const SerialExecutor&) = delete;

  // False once stopped (the task is not run). A task that throws is logged.
  bool post(std::function<void()> task);
  // Finishes the task in progress, drops the queued ones, joins. Idempotent.
  void stop();

 private:
  void loop();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace moe
