// adopt_reported: keep what the workers hold (within capacity), place what nobody holds.
#include "runtime/placement/adopt_reported.h"

#include <algorithm>
#include <string>

#include "runtime/placement/initial_placement.h"
#include "runtime/placement/placement_check.h"
#include "runtime/placement/placement_error.h"

namespace moe {

namespace {

struct Room {
  WorkerCapacity capacity;
  uint32_t slots_used = 0;
  uint64_t bytes_used = 0;

  bool fits(uint64_t bytes) const {
    if (capacity.slots != 0 && slots_used + 1 > capacity.slots) return false;
    if (capacity.memory_bytes != 0 && bytes_used + bytes > capacity.memory_bytes) return false;
    return true;
  }
  void take(uint64_t bytes) {
    ++slots_used;
    bytes_used += bytes;
  }
};

}  // namespace

bool reports_cover(const ExpertCatalog& catalog, const std::map<uint32_t, std::set<ExpertKey>>& hosted) {
  for (const auto& expert : catalog.experts) {
    bool held = false;
    for (const auto& [id, keys] : hosted) held = held || keys.count(expert.key) > 0;
    if (!held) return false;
  }
  return true;
}

AdoptedPlacement adopt_reported(const ExpertCatalog& catalog, const std::vector<WorkerCapacity>& workers,
                                const std::map<uint32_t, std::set<ExpertKey>>& hosted, int replicas, uint64_t epoch) {
  if (workers.empty()) throw PlacementError("cannot adopt a placement: no live worker");
  if (replicas < 1) throw PlacementError("cannot adopt a placement: replicas " + std::to_string(replicas) + " < 1");
  std::map<uint32_t, Room> rooms;
  for (const auto& worker : workers) rooms[worker.id] = Room{worker};

  AdoptedPlacement out;
  out.table.epoch = epoch;
  size_t reported_total = 0;
  for (const auto& [id, keys] : hosted) {
    if (rooms.count(id)) reported_total += keys.size();
  }

  // Biggest experts first, as every planner does: when capacity is short the small ones are left out last.
  std::vector<CatalogExpert> missing;
  for (const auto& expert : placement_order(catalog.experts)) {
    auto& replicas_of = out.table.assignments[expert.key];
    for (auto& [id, room] : rooms) {
      auto held = hosted.find(id);
      if (held == hosted.end() || !held->second.count(expert.key)) continue;
      if (!room.fits(expert.bytes)) continue;
      room.take(expert.bytes);
      replicas_of.push_back({id, 1.f});
      ++out.kept;
    }
    if (replicas_of.empty()) missing.push_back(expert);
  }
  out.dropped = reported_total - out.kept;

  // Experts nobody holds: `replicas` copies (at most one per worker) on the least-filled workers with room.
  std::vector<std::string> unplaced;
  for (const auto& expert : missing) {
    auto& replicas_of = out.table.assignments[expert.key];
    for (int copy = 0; copy < replicas; ++copy) {
      Room* best = nullptr;
      for (auto& [id, room] : rooms) {
        const bool holds = std::any_of(replicas_of.begin(), replicas_of.end(),
                                       [&](const Replica& r) { return r.worker_id == id; });
        if (holds || !room.fits(expert.bytes)) continue;
        if (!best || room.bytes_used < best->bytes_used ||
            (room.bytes_used == best->bytes_used && room.slots_used < best->slots_used)) {
          best = &room;
        }
      }
      if (!best) break;
      best->take(expert.bytes);
      replicas_of.push_back({best->capacity.id, 1.f});
      ++out.added;
    }
    if (replicas_of.empty()) unplaced.push_back(expert_name(expert.key));
  }
  if (!unplaced.empty()) {
    std::string names;
    for (size_t i = 0; i < unplaced.size() && i < 8; ++i) names += (i ? ", " : "") + unplaced[i];
    if (unplaced.size() > 8) names += ", ... (" + std::to_string(unplaced.size()) + " in all)";
    throw PlacementError("cannot adopt a placement: no live worker has room for " + names);
  }

  for (auto& [key, replicas_of] : out.table.assignments) {
    std::sort(replicas_of.begin(), replicas_of.end(),
              [](const Replica& a, const Replica& b) { return a.worker_id < b.worker_id; });
    out.table.set_equal_shares(key);
  }
  for (const auto& worker : workers) {
    const bool hosts = !out.table.experts_on(worker.id).empty();
    out.table.workers.push_back({worker.id, worker.address, hosts ? WorkerState::Active : WorkerState::Joining});
  }
  out.table.normalise();
  return out;
}

}  // namespace moe
