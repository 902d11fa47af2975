// The cluster's state lives in the cluster: a coordinator that starts without a placement (restarted
// without its state file, or with a stale one) adopts what the workers report they serve instead of
// starting over; epochs always continue above any epoch a worker reported; a worker that registers again
// (same address, and the same name or previous id) keeps its id; dead workers leave after a TTL.
#include <algorithm>

#include "coordinator/coordinator_core.h"
#include "coordinator/coordinator_log.h"
#include "runtime/placement/adopt_reported.h"

namespace moe {

using Core = CoordinatorService::Core;

bool Core::must_adopt_locked() const {
  if (table_stale) return true;
  if (table.epoch != 0) return false;
  return std::any_of(membership.all().begin(), membership.all().end(), [](const WorkerRecord& w) {
    return w.live() && w.confirmed && w.serving_epoch > 0 && !w.reported_hosted.empty();
  });
}

std::optional<Core::Adoption> Core::plan_adoption_locked() {
  const auto placeable = membership.placeable();
  std::map<uint32_t, std::set<ExpertKey>> hosted;
  uint64_t highest = 0;
  for (const auto& capacity : placeable) {
    const WorkerRecord* record = membership.find(capacity.id);
    hosted[capacity.id] = record->reported_hosted;
    highest = std::max(highest, record->serving_epoch);
  }
  const bool covered = reports_cover(model.experts(), hosted);
  if (!covered && Clock::now() < started_at + std::chrono::milliseconds(config.adopt_wait())) return std::nullopt;

  AdoptedPlacement adopted = adopt_reported(model.experts(), placeable, hosted, config.replicas, next_epoch_locked());
  Adoption out;
  out.next = std::move(adopted.table);
  for (const auto& [id, keys] : hosted) {
    for (const ExpertKey& key : keys) out.reported.assignments[key].push_back({id, 1.f});
  }
  out.reported.epoch = table.epoch;
  out.why = "adopting the placement " + std::to_string(placeable.size()) + " worker(s) report (serving epochs up to " +
            std::to_string(highest) + "): " + std::to_string(adopted.kept) + " copies kept, " +
            std::to_string(adopted.dropped) + " left out, " + std::to_string(adopted.added) + " placed anew" +
            (covered ? "" : " (the reports did not cover the model within " + std::to_string(config.adopt_wait()) + " ms)");
  return out;
}

void Core::reregistered_locked(WorkerRecord& record, const std::set<ExpertKey>& hosted) {
  const bool was_live = record.live();
  if (!was_live) record.state = WorkerState::Joining;
  record.confirmed = true;
  const auto in_table = table.experts_on(record.id);
  if (in_table.empty()) return;
  const bool holds = std::all_of(in_table.begin(), in_table.end(), [&](const ExpertKey& k) { return hosted.count(k) > 0; });
  if (holds) {
    record.stale_in_table = false;
    if (dead_in_table.erase(record.id)) {
      coordinator_log(record.label() + " is back with its " + std::to_string(in_table.size()) + " experts");
    }
    if (const PlacedWorker* placed = table.find_worker(record.id)) record.state = placed->state;
    return;
  }
  // A new incarnation without the experts the table gives it: re-home them; it gets experts again later.
  record.stale_in_table = true;
  dead_in_table.insert(record.id);
  estimates.forget_worker(record.id);
  links_to_drop.push_back(record.id);
  coordinator_log(record.label() + " registered again without " + std::to_string(in_table.size()) +
                  " experts the placement gives it (it restarted): they move to live workers first");
}

void Core::prune_dead_locked(Clock::time_point now) {
  std::vector<uint32_t> prune;
  for (const auto& worker : membership.all()) {
    if (worker.live() || dead_in_table.count(worker.id) || table.find_worker(worker.id)) continue;
    if (now - worker.dead_since >= std::chrono::milliseconds(config.dead_worker_ttl_ms)) prune.push_back(worker.id);
  }
  if (prune.empty()) return;
  for (uint32_t id : prune) membership.remove(id);
  coordinator_log("forgot " + std::to_string(prune.size()) + " worker(s) dead for over " +
                  std::to_string(config.dead_worker_ttl_ms) + " ms");
  metrics.set_workers(membership);
  save_state_locked(table);
}

}  // namespace moe
