// Queue, batching and compute threads of forward requests (see forward_batcher.h).
#include "worker/forward_batcher.h"

#include <algorithm>

#include "worker/worker_log.h"

namespace moe {

ForwardBatcher::ForwardBatcher(BatcherOptions options, RunBatch run_batch,
                               std::function<void(size_t)> observe_in_flight)
    : options_(options),
      run_batch_(std::move(run_batch)),
      slots_(ForwardSlots::create(options_.max_queue, std::move(observe_in_flight))) {
  int threads = std::max(1, options_.threads);
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { compute_loop(); });
}

ForwardBatcher::~ForwardBatcher() {
  stop();
  slots_->detach_observer();  // slots still held by unwritten replies outlive the batcher
}

ForwardBatcher::Submit ForwardBatcher::submit(std::unique_ptr<ForwardJob>& job) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return Submit::Stopped;
    std::shared_ptr<void> slot = slots_->try_acquire();
    if (!slot) return Submit::Overloaded;
    job->responder.hold_until_written(std::move(slot));
    queued_tokens_[job->backend_layer] += job->num_tokens;
    queue_.push_back(std::move(job));
  }
  changed_.notify_all();
  return Submit::Accepted;
}

void ForwardBatcher::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
  }
  changed_.notify_all();
  for (auto& thread : threads_) {
    if (thread.joinable() && thread.get_id() != std::this_thread::get_id()) thread.join();
  }
  std::lock_guard lock(mutex_);
  threads_.clear();
}

size_t ForwardBatcher::in_flight() const { return slots_->held(); }

uint64_t ForwardBatcher::batches_run() const {
  std::lock_guard lock(mutex_);
  return batches_run_;
}

uint64_t ForwardBatcher::jobs_run() const {
  std::lock_guard lock(mutex_);
  return jobs_run_;
}

void ForwardBatcher::compute_loop() {
  std::unique_lock lock(mutex_);
  for (;;) {
    changed_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, nothing left

    const ForwardJob* first = queue_.front().get();
    const int32_t layer = first->backend_layer;  // one layer of one weight version a batch
    const auto deadline = first->received + options_.batch_wait;
    changed_.wait_until(lock, deadline, [&] {
      return stopping_ || queue_.empty() || queue_.front().get() != first ||
             queued_tokens_[layer] >= options_.max_batch_tokens;
    });
    if (queue_.empty() || queue_.front().get() != first) continue;  // another thread took it

    Batch batch;
    uint64_t tokens = 0;
    for (auto it = queue_.begin(); it != queue_.end();) {
      ForwardJob& job = **it;
      if (job.backend_layer == layer && (batch.empty() || tokens + job.num_tokens <= options_.max_batch_tokens)) {
        tokens += job.num_tokens;
        batch.push_back(std::move(*it));
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
    queued_tokens_[layer] -= tokens;
    if (!queue_.empty()) changed_.notify_all();  // another thread may start on what is left

    lock.unlock();
    try {
      run_batch_(batch);
    } catch (const std::exception& e) {
      worker_log(std::string("forward batch failed unexpectedly: ") + e.what());
    }
    const size_t count = batch.size();
    batch.clear();
    lock.lock();
    ++batches_run_;
    jobs_run_ += count;
  }
}

}  // namespace moe
