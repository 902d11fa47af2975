// Registration of the worker's metric families (see worker_metrics.h).
#include "worker/worker_metrics.h"

#include <string>

#include <capnp/schema.h>

#include "runtime/wire/envelope_util.h"

namespace moe {

namespace {
prometheus::Histogram::BucketBoundaries seconds_buckets() {
  // 50 us .. ~3.3 s, x2 steps.
  prometheus::Histogram::BucketBoundaries b;
  for (double s = 50e-6; s < 4.0; s *= 2) b.push_back(s);
  return b;
}

prometheus::Histogram::BucketBoundaries token_buckets() {
  prometheus::Histogram::BucketBoundaries b;
  for (double t = 1; t <= 16384; t *= 2) b.push_back(t);
  return b;
}

prometheus::Histogram& histogram(prometheus::Registry& registry, const std::string& name, const std::string& help,
                                 prometheus::Histogram::BucketBoundaries buckets) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(registry).Add({}, std::move(buckets));
}

prometheus::Gauge& gauge(prometheus::Registry& registry, const std::string& name, const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(registry).Add({});
}
}  // namespace

WorkerMetrics::WorkerMetrics(prometheus::Registry& registry)
    : forward_seconds(histogram(registry, "moe_worker_forward_seconds",
                                "Forward request latency inside the worker, from receipt to reply", seconds_buckets())),
      queue_seconds(histogram(registry, "moe_worker_queue_seconds",
                              "Time a forward request waited before its batch started computing", seconds_buckets())),
      batch_tokens(histogram(registry, "moe_worker_batch_tokens", "Tokens per backend call (batched requests together)",
                             token_buckets())),
      experts_hosted(gauge(registry, "moe_worker_experts_hosted", "Experts loaded on this worker")),
      weight_bytes(gauge(registry, "moe_worker_weight_bytes", "Bytes of expert weights held by the backend")),
      epoch(gauge(registry, "moe_worker_epoch", "Placement epoch this worker serves")),
      weight_version(gauge(registry, "moe_worker_weight_version", "Weight version this worker's current epoch serves")),
      weight_layers_ahead(gauge(registry, "moe_worker_weight_layers_ahead",
                                "MoE layers the current epoch serves in a newer weight version than "
                                "moe_worker_weight_version (a layer-by-layer update-weights under way)")),
      weight_bytes_peak(gauge(registry, "moe_worker_weight_bytes_peak",
                              "The most bytes of expert weights the backend held since the worker started")),
      forwards_in_flight(gauge(registry, "moe_worker_forwards_in_flight",
                               "Forward requests accepted whose reply is not yet written to the socket")),
      max_queue(gauge(registry, "moe_worker_max_queue",
                      "Bound on forward requests in flight (--max-queue); past it they are answered overloaded")),
      expert_tokens_(prometheus::BuildCounter()
                         .Name("moe_expert_tokens_total")
                         .Help("Tokens computed per expert on this worker (one per routed (token, expert) pair)")
                         .Register(registry)),
      errors_(prometheus::BuildCounter()
                  .Name("moe_worker_errors_total")
                  .Help("Error replies sent by this worker, by error code")
                  .Register(registry)) {
  // Every code starts at 0, so rate() and dashboards see the series before the first error.
  const auto codes = capnp::Schema::from<wire::ErrorCode>().getEnumerants();
  for (unsigned i = 0; i < codes.size(); ++i) errors_.Add({{"code", error_code_name(static_cast<wire::ErrorCode>(i))}});
}

void WorkerMetrics::add_expert_tokens(int32_t layer, int32_t expert, uint64_t tokens) {
  expert_tokens_.Add({{"layer", std::to_string(layer)}, {"expert", std::to_string(expert)}})
      .Increment(static_cast<double>(tokens));
}

void WorkerMetrics::count_error(wire::ErrorCode code) { errors_.Add({{"code", error_code_name(code)}}).Increment(); }

}  // namespace moe
