// PlacementTable lookups and normalisation.
#include "runtime/placement/placement_table.h"

#include <algorithm>

#include "runtime/placement/placement_error.h"

namespace moe {

const char* worker_state_name(WorkerState state) {
  switch (state) {
    case WorkerState::Joining: return "joining";
    case WorkerState::Active: return "active";
    case WorkerState::Draining: return "draining";
    case WorkerState::Dead: return "dead";
  }
  return "unknown";
}

WorkerState parse_worker_state(const std::string& name) {
  for (auto state : {WorkerState::Joining, WorkerState::Active, WorkerState::Draining, WorkerState::Dead}) {
    if (name == worker_state_name(state)) return state;
  }
  throw PlacementError("unknown worker state '" + name + "' (expected joining, active, draining or dead)");
}

const PlacedWorker* PlacementTable::find_worker(uint32_t id) const {
  for (const auto& worker : workers) {
    if (worker.id == id) return &worker;
  }
  return nullptr;
}

std::vector<ExpertKey> PlacementTable::experts_on(uint32_t worker_id) const {
  std::vector<ExpertKey> out;
  for (const auto& [key, replicas] : assignments) {
    for (const auto& replica : replicas) {
      if (replica.worker_id == worker_id) out.push_back(key);
    }
  }
  return out;
}

bool PlacementTable::hosts(uint32_t worker_id, ExpertKey key) const {
  auto it = assignments.find(key);
  if (it == assignments.end()) return false;
  return std::any_of(it->second.begin(), it->second.end(),
                     [&](const Replica& r) { return r.worker_id == worker_id; });
}

std::vector<ExpertKey> PlacementTable::gained_by(uint32_t worker_id, const PlacementTable& next) const {
  std::vector<ExpertKey> out;
  for (const auto& key : next.experts_on(worker_id)) {
    if (!hosts(worker_id, key)) out.push_back(key);
  }
  return out;
}

void PlacementTable::normalise() {
  std::sort(workers.begin(), workers.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  for (auto& [key, replicas] : assignments) {
    std::sort(replicas.begin(), replicas.end(), [](const auto& a, const auto& b) { return a.worker_id < b.worker_id; });
  }
}

void PlacementTable::set_equal_shares(ExpertKey key) {
  auto it = assignments.find(key);
  if (it == assignments.end()) return;
  for (auto& replica : it->second) replica.share = 1.f / static_cast<float>(it->second.size());
}

}  // namespace moe
