// The coordinator's Prometheus series: moe_coordinator_workers{state}, moe_placement_epoch,
// moe_coordinator_unavailable_experts (experts the committed placement leaves without a replica because
// capacity is short), moe_lease_expiries_total, moe_placement_changes_total, moe_weight_moves_total, moe_rebalances_total,
// and from the workers' last heartbeat windows moe_layer_imbalance_ratio{layer} (max worker load / mean
// worker load over the workers hosting the layer) and moe_expert_load_share{layer,expert} (the expert's
// fraction of its layer's tokens). Layers without tokens in the window have neither series.
// moe_coordinator_errors_total{code}: error replies sent, by wire error code (unauthorized included).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include "coordinator/membership.h"
#include "runtime/wire/moe.capnp.h"
#include "runtime/placement/placement_table.h"

namespace moe {

class CoordinatorMetrics {
 public:
  explicit CoordinatorMetrics(prometheus::Registry& registry);

  void set_workers(const Membership& membership);  // per state; "unconfirmed" for reloaded ones
  void set_epoch(uint64_t epoch) { epoch_.Set(static_cast<double>(epoch)); }
  void lease_expired() { lease_expiries_.Increment(); }
  void placement_changed() { placement_changes_.Increment(); }
  void weights_moved(size_t expert_copies) { weight_moves_.Increment(static_cast<double>(expert_copies)); }
  void rebalanced() { rebalances_.Increment(); }
  void set_unavailable_experts(size_t experts) { unavailable_.Set(static_cast<double>(experts)); }
  void count_error(wire::ErrorCode code);  // thread-safe
  // Recomputes imbalance and load share from the live workers' last heartbeats and the committed table.
  // Not thread-safe: callers serialise (the coordinator calls it under its mutex).
  void set_load(const Membership& membership, const PlacementTable& table);

 private:
  prometheus::Family<prometheus::Gauge>& workers_;
  prometheus::Gauge& epoch_;
  prometheus::Counter& lease_expiries_;
  prometheus::Counter& placement_changes_;
  prometheus::Counter& weight_moves_;
  prometheus::Counter& rebalances_;
  prometheus::Gauge& unavailable_;
  prometheus::Family<prometheus::Gauge>& imbalance_;
  prometheus::Family<prometheus::Gauge>& load_share_;
  prometheus::Family<prometheus::Counter>& errors_;
  std::map<int32_t, prometheus::Gauge*> imbalance_series_;
  std::map<ExpertKey, prometheus::Gauge*> load_share_series_;
};

}  // namespace moe
