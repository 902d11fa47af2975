// Computes one batch of forward requests of one layer with the ExpertBackend: unpacks every request's
// tokens (f32 or bf16) into one [sum of tokens, hidden] matrix, offsets each request's assignments to
// its rows, runs one backend call, and splits the output back into one forwardReply per request, in the
// request's dtype. Deterministic requests (ForwardRequest.deterministic) share the batch but go through
// ExpertBackend::forward_rows and get one reply row per (token, expert) pair. Requests that waited past their deadline are answered deadlineExceeded; when the
// batched call fails (an expert was released meanwhile) each request is retried alone so only the
// failing ones get an error. Counts tokens per expert and records latency metrics.
#pragma once

#include <functional>

#include "worker/expert_store.h"
#include "worker/forward_batcher.h"
#include "worker/load_window.h"
#include "worker/worker_metrics.h"

namespace moe {

class ForwardRunner {
 public:
  ForwardRunner(ExpertStore& store, WorkerMetrics& metrics, LoadWindow& load, std::function<uint64_t()> current_epoch)
      : store_(store), metrics_(metrics), load_(load), current_epoch_(std::move(current_epoch)) {}

  // Replies to every job of `batch` (all of one layer). Does not throw.
  void run(ForwardBatcher::Batch& batch);

 private:
  void run_alone(ForwardJob& job, const std::vector<float>& x);
  void reply_output(ForwardJob& job, const float* out, uint64_t compute_micros);
  void count_tokens(int32_t layer, const std::vector<const ForwardJob*>& jobs);

  ExpertStore& store_;
  WorkerMetrics& metrics_;
  LoadWindow& load_;
  std::function<uint64_t()> current_epoch_;
};

}  // namespace moe
