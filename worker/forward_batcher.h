// The bounded queue between the io threads and the compute threads, and the batching policy.
//
// submit() queues a job (or refuses it: max_queue jobs in flight, or stopping). A job counts as in flight
// from submit() until its reply has been written to the socket (see forward_slots.h), so replies that a
// slow client does not read keep counting. Each compute
// thread takes the oldest queued job, waits until it has been queued for batch_wait (or until its layer
// has max_batch_tokens tokens queued), then takes every queued job of that layer that fits in
// max_batch_tokens (the first always goes) and hands them to run_batch as one batch. Requests that
// arrive while every compute thread is busy therefore batch up on their own.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "worker/forward_job.h"
#include "worker/forward_slots.h"

namespace moe {

struct BatcherOptions {
  int threads = 1;
  uint32_t max_queue = 1024;            // jobs queued, computing, or whose reply is not written yet
  std::chrono::microseconds batch_wait{200};
  uint32_t max_batch_tokens = 8192;
};

class ForwardBatcher {
 public:
  using Batch = std::vector<std::unique_ptr<ForwardJob>>;
  // Replies to every job of the batch; must not throw (an escaping exception is logged).
  using RunBatch = std::function<void(Batch& batch)>;

  // `observe_in_flight` (optional) gets in_flight() after every change, from any thread (a metrics gauge).
  ForwardBatcher(BatcherOptions options, RunBatch run_batch, std::function<void(size_t)> observe_in_flight = nullptr);
  ~ForwardBatcher();  // stop(), and no more calls to observe_in_flight
  ForwardBatcher(const ForwardBatcher&) = delete;
  ForwardBatcher& operator=(const ForwardBatcher&) = delete;

  enum class Submit { Accepted, Overloaded, Stopped };
  // On Accepted the job is taken; otherwise `job` is left to the caller (to reply an error).
  Submit submit(std::unique_ptr<ForwardJob>& job);

  // Stops taking jobs, runs every queued job, joins the threads. Idempotent.
  void stop();

  // Jobs accepted whose reply is not written yet (queued, computing, or waiting on the socket).
  size_t in_flight() const;
  uint64_t batches_run() const;
  uint64_t jobs_run() const;

 private:
  void compute_loop();

  BatcherOptions options_;
  RunBatch run_batch_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::unique_ptr<ForwardJob>> queue_;
  std::map<int32_t, uint64_t> queued_tokens_;  // per layer
  std::shared_ptr<ForwardSlots> slots_;
  uint64_t batches_run_ = 0;
  uint64_t jobs_run_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace moe
