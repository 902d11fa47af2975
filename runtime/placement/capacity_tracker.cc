// CapacityTracker: least-loaded choice under slot and memory limits.
#include "runtime/placement/capacity_tracker.h"

#include <algorithm>
#include <tuple>

namespace moe {

CapacityTracker::CapacityTracker(std::vector<WorkerCapacity> workers) : workers_(std::move(workers)) {
  std::sort(workers_.begin(), workers_.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  for (const auto& worker : workers_) used_[worker.id] = {};
}

void CapacityTracker::add_existing(const PlacementTable& table, const ExpertCatalog& catalog) {
  for (const auto& [key, replicas] : table.assignments) {
    for (const auto& replica : replicas) {
      if (used_.count(replica.worker_id)) take(replica.worker_id, catalog.bytes_of(key));
    }
  }
}

std::optional<uint32_t> CapacityTracker::pick(uint64_t bytes, const std::set<uint32_t>& exclude) const {
  std::optional<uint32_t> best;
  std::tuple<uint64_t, uint32_t, uint32_t> best_score{};
  for (const auto& worker : workers_) {
    if (exclude.count(worker.id)) continue;
    const Used& used = used_.at(worker.id);
    if (worker.slots != 0 && used.slots >= worker.slots) continue;
    if (worker.memory_bytes != 0 && used.bytes + bytes > worker.memory_bytes) continue;
    auto score = std::make_tuple(used.bytes, used.slots, worker.id);
    if (!best || score < best_score) {
      best = worker.id;
      best_score = score;
    }
  }
  return best;
}

void CapacityTracker::take(uint32_t worker_id, uint64_t bytes) {
  Used& used = used_.at(worker_id);
  used.slots += 1;
  used.bytes += bytes;
}

void CapacityTracker::release(uint32_t worker_id, uint64_t bytes) {
  Used& used = used_.at(worker_id);
  used.slots -= std::min<uint32_t>(used.slots, 1);
  used.bytes -= std::min(used.bytes, bytes);
}

bool CapacityTracker::fits(uint32_t worker_id, uint64_t bytes, uint64_t freed_bytes, bool frees_slot) const {
  auto it = std::find_if(workers_.begin(), workers_.end(), [&](const WorkerCapacity& w) { return w.id == worker_id; });
  if (it == workers_.end()) return false;
  const Used& used = used_.at(worker_id);
  const uint64_t slots = used.slots - (frees_slot && used.slots > 0 ? 1 : 0);
  const uint64_t held = used.bytes - std::min(used.bytes, freed_bytes);
  if (it->slots != 0 && slots >= it->slots) return false;
  if (it->memory_bytes != 0 && held + bytes > it->memory_bytes) return false;
  return true;
}

std::string CapacityTracker::describe() const {
  std::string out;
  for (const auto& worker : workers_) {
    const Used& used = used_.at(worker.id);
    if (!out.empty()) out += "; ";
    out += "worker " + std::to_string(worker.id) + " (" + worker.address + "): " + std::to_string(used.slots) + "/" +
           (worker.slots ? std::to_string(worker.slots) : std::string("unlimited")) + " slots, " +
           std::to_string(used.bytes) + "/" +
           (worker.memory_bytes ? std::to_string(worker.memory_bytes) : std::string("unlimited")) + " bytes used";
  }
  return out.empty() ? "no workers" : out;
}

}  // namespace moe
