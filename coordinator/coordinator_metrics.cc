// CoordinatorMetrics: registration of the series and the per-state worker count.
#include "coordinator/coordinator_metrics.h"

#include <algorithm>
#include <set>
#include <string>

#include <capnp/schema.h>

#include "runtime/wire/envelope_util.h"

namespace moe {

CoordinatorMetrics::CoordinatorMetrics(prometheus::Registry& registry)
    : workers_(prometheus::BuildGauge().Name("moe_coordinator_workers").Help("Workers known to the coordinator, by state").Register(registry)),
      epoch_(prometheus::BuildGauge().Name("moe_placement_epoch").Help("The committed placement epoch").Register(registry).Add({})),
      lease_expiries_(prometheus::BuildCounter().Name("moe_lease_expiries_total").Help("Workers declared dead because their lease expired").Register(registry).Add({})),
      placement_changes_(prometheus::BuildCounter().Name("moe_placement_changes_total").Help("Placement epochs committed").Register(registry).Add({})),
      weight_moves_(prometheus::BuildCounter().Name("moe_weight_moves_total").Help("Expert copies loaded onto a worker by committed placement changes (the first placement included)").Register(registry).Add({})),
      rebalances_(prometheus::BuildCounter().Name("moe_rebalances_total").Help("Rebalances committed (placement changes made to even out load)").Register(registry).Add({})),
      unavailable_(prometheus::BuildGauge().Name("moe_coordinator_unavailable_experts").Help("Experts the committed placement leaves without a replica because the workers lack the capacity (0 = full service)").Register(registry).Add({})),
      imbalance_(prometheus::BuildGauge().Name("moe_layer_imbalance_ratio").Help("Max worker load / mean worker load of a layer over the last heartbeat window (1 = even)").Register(registry)),
      load_share_(prometheus::BuildGauge().Name("moe_expert_load_share").Help("An expert's fraction of its layer's tokens over the last heartbeat window").Register(registry)),
      errors_(prometheus::BuildCounter().Name("moe_coordinator_errors_total").Help("Error replies sent by the coordinator, by error code").Register(registry)) {
  set_workers(Membership{});
  // Every code starts at 0, so rate() and dashboards see the series before the first error.
  const auto codes = capnp::Schema::from<wire::ErrorCode>().getEnumerants();
  for (unsigned i = 0; i < codes.size(); ++i) errors_.Add({{"code", error_code_name(static_cast<wire::ErrorCode>(i))}});
}

void CoordinatorMetrics::count_error(wire::ErrorCode code) { errors_.Add({{"code", error_code_name(code)}}).Increment(); }

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

void CoordinatorMetrics::set_load(const Membership& membership, const PlacementTable& table) {
  std::map<int32_t, std::map<uint32_t, uint64_t>> worker_tokens;  // layer -> worker -> tokens
  std::map<ExpertKey, uint64_t> expert_tokens;
  for (const auto& worker : membership.all()) {
    if (!worker.live()) continue;
    for (const auto& load : worker.load) {
      worker_tokens[load.key.layer][worker.id] += load.tokens;
      expert_tokens[load.key] += load.tokens;
    }
  }
  std::map<int32_t, std::set<uint32_t>> hosts;  // layer -> workers hosting one of its experts
  for (const auto& [key, replicas] : table.assignments) {
    for (const auto& replica : replicas) hosts[key.layer].insert(replica.worker_id);
  }
  std::map<int32_t, uint64_t> layer_total;
  std::map<int32_t, double> imbalance;
  for (const auto& [layer, workers] : hosts) {
    uint64_t total = 0, peak = 0;
    for (uint32_t id : workers) {
      const uint64_t tokens = worker_tokens[layer][id];
      total += tokens;
      peak = std::max(peak, tokens);
    }
    if (total == 0) continue;
    layer_total[layer] = total;
    imbalance[layer] = static_cast<double>(peak) * static_cast<double>(workers.size()) / static_cast<double>(total);
  }
  // Drop the series of layers and experts without tokens now; set the rest.
  for (auto it = imbalance_series_.begin(); it != imbalance_series_.end();) {
    if (imbalance.count(it->first)) { ++it; continue; }
    imbalance_.Remove(it->second);
    it = imbalance_series_.erase(it);
  }
  for (const auto& [layer, ratio] : imbalance) {
    auto& gauge = imbalance_series_[layer];
    if (!gauge) gauge = &imbalance_.Add({{"layer", std::to_string(layer)}});
    gauge->Set(ratio);
  }
  for (auto it = load_share_series_.begin(); it != load_share_series_.end();) {
    if (layer_total.count(it->first.layer)) { ++it; continue; }
    load_share_.Remove(it->second);
    it = load_share_series_.erase(it);
  }
  for (const auto& [key, replicas] : table.assignments) {
    const auto total = layer_total.find(key.layer);
    if (total == layer_total.end()) continue;
    auto& gauge = load_share_series_[key];
    if (!gauge) gauge = &load_share_.Add({{"layer", std::to_string(key.layer)}, {"expert", std::to_string(key.expert)}});
    const auto tokens = expert_tokens.find(key);
    gauge->Set(tokens == expert_tokens.end() ? 0.0 : static_cast<double>(tokens->second) / static_cast<double>(total->second));
  }
}

}  // namespace moe
