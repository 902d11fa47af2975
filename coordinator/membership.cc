// Membership: lookups and lease checks over the worker records.
#include "coordinator/membership.h"

#include <algorithm>

namespace moe {

std::string WorkerRecord::label() const { return "worker " + std::to_string(id) + " (" + address + ")"; }

WorkerRecord& Membership::add(WorkerRecord record) {
  if (record.id == 0) record.id = next_id_;
  next_id_ = std::max(next_id_, record.id + 1);
  auto at = std::lower_bound(workers_.begin(), workers_.end(), record.id,
                             [](const WorkerRecord& w, uint32_t id) { return w.id < id; });
  return *workers_.insert(at, std::move(record));
}

WorkerRecord* Membership::find(uint32_t id) {
  for (auto& worker : workers_) {
    if (worker.id == id) return &worker;
  }
  return nullptr;
}

WorkerRecord* Membership::find_live_by_address(const std::string& address) {
  for (auto& worker : workers_) {
    if (worker.live() && worker.address == address) return &worker;
  }
  return nullptr;
}

WorkerRecord* Membership::find_by_address(const std::string& address) {
  WorkerRecord* found = nullptr;
  for (auto& worker : workers_) {
    if (worker.address != address) continue;
    if (!found || (worker.live() && !found->live()) || (worker.live() == found->live() && worker.id > found->id)) {
      found = &worker;
    }
  }
  return found;
}

bool Membership::remove(uint32_t id) {
  return std::erase_if(workers_, [&](const WorkerRecord& w) { return w.id == id; }) > 0;
}

std::vector<uint32_t> Membership::expired(WorkerRecord::Clock::time_point now) const {
  std::vector<uint32_t> out;
  for (const auto& worker : workers_) {
    if (worker.live() && worker.lease_deadline <= now) out.push_back(worker.id);
  }
  return out;
}

std::vector<WorkerCapacity> Membership::placeable() const {
  std::vector<WorkerCapacity> out;
  for (const auto& worker : workers_) {
    if (worker.live() && worker.confirmed && !worker.stale_in_table) out.push_back(worker.capacity());
  }
  return out;
}

size_t Membership::count(WorkerState state, bool confirmed) const {
  return static_cast<size_t>(std::count_if(workers_.begin(), workers_.end(), [&](const WorkerRecord& w) {
    return w.state == state && w.confirmed == confirmed;
  }));
}

}  // namespace moe
