// ClientMetrics: prometheus families of the client and the plain counters behind ClientStats.
#include "runtime/client/client_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace moe {

namespace {

const char* outcome_label(CallOutcome o) {
  switch (o) {
    case CallOutcome::Ok: return "ok";
    case CallOutcome::DeadlineExceeded: return "deadline_exceeded";
    case CallOutcome::Error: return "error";
  }
  return "error";
}

}  // namespace

ClientMetrics::ClientMetrics(prometheus::Registry* registry) : registry_(registry) {
  if (!registry_) return;
  auto& calls = prometheus::BuildCounter()
                    .Name("moe_client_forward_calls_total")
                    .Help("Forward calls of the cluster client by outcome")
                    .Register(*registry_);
  for (auto o : {CallOutcome::Ok, CallOutcome::DeadlineExceeded, CallOutcome::Error})
    calls_[static_cast<size_t>(o)] = &calls.Add({{"outcome", outcome_label(o)}});
  retries_ = &prometheus::BuildCounter()
                  .Name("moe_client_retries_total")
                  .Help("Worker shards the client sent again after a failure")
                  .Register(*registry_)
                  .Add({});
  tokens_ = &prometheus::BuildCounter()
                 .Name("moe_client_tokens_total")
                 .Help("Tokens (rows of hidden states) forwarded by successful calls")
                 .Register(*registry_)
                 .Add({});
  latency_ = &prometheus::BuildHistogram()
                  .Name("moe_client_forward_latency_seconds")
                  .Help("Latency of one forward call of the cluster client, retries included")
                  .Register(*registry_)
                  .Add({}, prometheus::Histogram::BucketBoundaries{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                                    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10});
}

void ClientMetrics::record_call(CallOutcome outcome, int64_t tokens, std::chrono::steady_clock::duration latency) {
  {
    std::lock_guard lock(mutex_);
    switch (outcome) {
      case CallOutcome::Ok: ++stats_.calls_ok; stats_.tokens += static_cast<uint64_t>(tokens); break;
      case CallOutcome::DeadlineExceeded: ++stats_.calls_deadline_exceeded; break;
      case CallOutcome::Error: ++stats_.calls_error; break;
    }
  }
  if (!registry_) return;
  calls_[static_cast<size_t>(outcome)]->Increment();
  if (outcome == CallOutcome::Ok) tokens_->Increment(static_cast<double>(tokens));
  latency_->Observe(std::chrono::duration<double>(latency).count());
}

void ClientMetrics::record_retry(size_t shards) {
  {
    std::lock_guard lock(mutex_);
    stats_.retries += shards;
  }
  if (registry_) retries_->Increment(static_cast<double>(shards));
}

void ClientMetrics::record_request(const std::string& status) {
  if (!registry_) return;
  std::lock_guard lock(mutex_);
  auto& counter = request_counters_[status];
  if (!counter) {
    counter = &prometheus::BuildCounter()
                   .Name("moe_client_requests_total")
                   .Help("Worker forward requests of the cluster client by status")
                   .Register(*registry_)
                   .Add({{"status", status}});
  }
  counter->Increment();
}

void ClientMetrics::record_shard_done(int32_t layer, uint32_t worker, const WorkerShard& shard, size_t payload_bytes) {
  std::lock_guard lock(mutex_);
  stats_.tokens_per_worker[worker] += shard.tokens.size();
  stats_.payload_bytes += payload_bytes;
  for (const auto& a : shard.assignments) ++stats_.tokens_per_expert[ExpertKey{layer, a.expert}];
}

ClientStats ClientMetrics::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

}  // namespace moe
