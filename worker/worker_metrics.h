// The Prometheus metrics of one worker (names follow ARCHITECTURE.md: moe_ prefix, base units):
//   moe_expert_tokens_total{layer,expert}  tokens computed per hosted expert (one per (token, expert) pair)
//   moe_worker_forward_seconds             request latency inside the worker: received -> reply sent
//   moe_worker_queue_seconds               received -> its batch starts computing
//   moe_worker_batch_tokens                tokens per backend call (batched requests together)
//   moe_worker_experts_hosted              experts loaded
//   moe_worker_weight_bytes                bytes of expert weights the backend holds
//   moe_worker_epoch                       the placement epoch the worker serves
//   moe_worker_weight_version              the weight version its current epoch serves (update-weights; during
//                                          a layer-by-layer update the one its not-yet-updated layers serve)
//   moe_worker_weight_layers_ahead         MoE layers its current epoch serves in a newer version than that
//                                          (a layer-by-layer update under way; 0 otherwise)
//   moe_worker_weight_bytes_peak           the most bytes of expert weights the backend held since start
//   moe_worker_errors_total{code}          error replies sent, by wire error code
//   moe_worker_forwards_in_flight          forward requests accepted whose reply is not written yet
//   moe_worker_max_queue                   the bound on those (--max-queue); past it: `overloaded`
#pragma once

#include <cstdint>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "runtime/wire/moe.capnp.h"

namespace moe {

class WorkerMetrics {
 public:
  explicit WorkerMetrics(prometheus::Registry& registry);

  void add_expert_tokens(int32_t layer, int32_t expert, uint64_t tokens);
  void count_error(wire::ErrorCode code);

  prometheus::Histogram& forward_seconds;
  prometheus::Histogram& queue_seconds;
  prometheus::Histogram& batch_tokens;
  prometheus::Gauge& experts_hosted;
  prometheus::Gauge& weight_bytes;
  prometheus::Gauge& epoch;
  prometheus::Gauge& weight_version;
  prometheus::Gauge& weight_layers_ahead;
  prometheus::Gauge& weight_bytes_peak;
  prometheus::Gauge& forwards_in_flight;
  prometheus::Gauge& max_queue;

 private:
  prometheus::Family<prometheus::Counter>& expert_tokens_;
  prometheus::Family<prometheus::Counter>& errors_;
};

}  // namespace moe
