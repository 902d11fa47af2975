// The coordinator's Prometheus series: moe_coordinator_workers{state}, moe_placement_epoch,
// moe_lease_expiries_total, moe_placement_changes_total.
#pragma once

#include <cstdint>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include "coordinator/membership.h"

namespace moe {

class CoordinatorMetrics {
 public:
  explicit CoordinatorMetrics(prometheus::Registry& registry);

  void set_workers(const Membership& membership);  // per state; "unconfirmed" for reloaded ones
  void set_epoch(uint64_t epoch) { epoch_.Set(static_cast<double>(epoch)); }
  void lease_expired() { lease_expiries_.Increment(); }
  void placement_changed() { placement_changes_.Increment(); }

 private:
  prometheus::Family<prometheus::Gauge>& workers_;
  prometheus::Gauge& epoch_;
  prometheus::Counter& lease_expiries_;
  prometheus::Counter& placement_changes_;
};

}  // namespace moe
