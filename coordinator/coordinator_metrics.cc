// CoordinatorMetrics: registration of the series and the per-state worker count.
#include "coordinator/coordinator_metrics.h"

namespace moe {

CoordinatorMetrics::CoordinatorMetrics(prometheus::Registry& registry)
    : workers_(prometheus::BuildGauge().Name("moe_coordinator_workers").Help("Workers known to the coordinator, by state").Register(registry)),
      epoch_(prometheus::BuildGauge().Name("moe_placement_epoch").Help("The committed placement epoch").Register(registry).Add({})),
      lease_expiries_(prometheus::BuildCounter().Name("moe_lease_expiries_total").Help("Workers declared dead because their lease expired").Register(registry).Add({})),
      placement_changes_(prometheus::BuildCounter().Name("moe_placement_changes_total").Help("Placement epochs committed").Register(registry).Add({})) {
  set_workers(Membership{});
}

void CoordinatorMetrics::set_workers(const Membership& membership) {
  for (auto state : {WorkerState::Joining, WorkerState::Active, WorkerState::Draining, WorkerState::Dead}) {
    size_t n = membership.count(state, true);
    if (state == WorkerState::Dead) n += membership.count(state, false);
    workers_.Add({{"state", worker_state_name(state)}}).Set(static_cast<double>(n));
  }
  size_t unconfirmed = 0;
  for (const auto& worker : membership.all()) unconfirmed += worker.live() && !worker.confirmed;
  workers_.Add({{"state", "unconfirmed"}}).Set(static_cast<double>(unconfirmed));
}

}  // namespace moe
