// The workers the coordinator knows: identity, capacity, state, lease, the registration connection that
// ties them to us, and their last heartbeat's load window. A plain container: the service locks it.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "runtime/placement/expert_catalog.h"
#include "runtime/placement/placement_table.h"

namespace moe {

struct ExpertTokens {
  ExpertKey key;
  uint64_t tokens = 0;
};

struct WorkerRecord {
  using Clock = std::chrono::steady_clock;

  uint32_t id = 0;
  std::string name;
  std::string address;
  std::string backend;
  uint64_t memory_bytes = 0;
  uint32_t slots = 0;
  WorkerState state = WorkerState::Joining;
  // False for a worker reloaded from the state file until it registers again.
  bool confirmed = true;
  Clock::time_point lease_deadline{};
  uint64_t registration = 0;  // which registration connection is this worker's (0: none)
  // That connection (compared, never dereferenced): heartbeats count only when they arrive on it.
  const void* registered_on = nullptr;
  // The key the worker sent with its registration: prepare, commit and release carry it back.
  std::string control_key;
  // The last heartbeat.
  std::vector<ExpertTokens> load;
  uint32_t window_ms = 0;
  uint64_t memory_used_bytes = 0;
  uint64_t serving_epoch = 0;
  uint64_t weight_version = 0;  // the weight version it serves (registration, heartbeats)
  std::string weight_source;    // where that version's weights are (registration)
  // What it reported loaded when it registered (a coordinator that starts adopts these).
  std::set<ExpertKey> reported_hosted;
  // A new incarnation (restarted process) whose id the table still lists with experts it no longer
  // holds: not placeable until a committed epoch leaves it out.
  bool stale_in_table = false;
  Clock::time_point dead_since{};  // when it was marked dead (for --dead-worker-ttl-ms)

  bool live() const { return state != WorkerState::Dead; }
  WorkerCapacity capacity() const { return {id, address, memory_bytes, slots}; }
  // "worker 3 (127.0.0.1:7503)"
  std::string label() const;
};

class Membership {
 public:
  WorkerRecord& add(WorkerRecord record);  // gives it the next id when record.id == 0
  WorkerRecord* find(uint32_t id);
  // A live worker at `address` (unconfirmed ones included), or nullptr.
  WorkerRecord* find_live_by_address(const std::string& address);
  // The newest record (live or dead) at `address`, or nullptr.
  WorkerRecord* find_by_address(const std::string& address);
  // Removes the record with `id` (a dead worker pruned after its TTL); false when there is none.
  bool remove(uint32_t id);
  std::vector<WorkerRecord>& all() { return workers_; }
  const std::vector<WorkerRecord>& all() const { return workers_; }

  // Live workers whose lease ran out by `now`.
  std::vector<uint32_t> expired(WorkerRecord::Clock::time_point now) const;
  // Live, confirmed workers: the ones a plan may give experts to.
  std::vector<WorkerCapacity> placeable() const;
  size_t count(WorkerState state, bool confirmed) const;

  uint32_t next_id() const { return next_id_; }
  void set_next_id(uint32_t id) { next_id_ = id; }
  uint64_t new_registration() { return ++registrations_; }

 private:
  std::vector<WorkerRecord> workers_;  // ascending id
  uint32_t next_id_ = 1;
  uint64_t registrations_ = 0;
};

}  // namespace moe
