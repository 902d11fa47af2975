// What the planners share: per-worker used slots and bytes, the choice of the least-loaded worker that
// can still take an expert, and the message that names the shortfall when none can.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "runtime/placement/expert_catalog.h"
#include "runtime/placement/placement_table.h"

namespace moe {

class CapacityTracker {
 public:
  explicit CapacityTracker(std::vector<WorkerCapacity> workers);

  // Counts what `table` already puts on the tracked workers (others are ignored).
  void add_existing(const PlacementTable& table, const ExpertCatalog& catalog);
  // The worker with the fewest bytes (then experts, then lowest id) that is not in `exclude` and has
  // a free slot and `bytes` of free memory; nullopt when none.
  std::optional<uint32_t> pick(uint64_t bytes, const std::set<uint32_t>& exclude) const;
  void take(uint32_t worker_id, uint64_t bytes);
  // Gives back what take() counted (an evicted copy).
  void release(uint32_t worker_id, uint64_t bytes);
  // Whether `worker_id` (tracked) has a free slot and `bytes` of free memory after freeing one copy of
  // `freed_bytes` (0: nothing freed).
  bool fits(uint32_t worker_id, uint64_t bytes, uint64_t freed_bytes = 0, bool frees_slot = false) const;
  // "worker 1 (10.0.0.1:7501): 3/4 slots, 100/1000 bytes used; ..." for error messages.
  std::string describe() const;
  const std::vector<WorkerCapacity>& workers() const { return workers_; }

 private:
  struct Used {
    uint32_t slots = 0;
    uint64_t bytes = 0;
  };
  std::vector<WorkerCapacity> workers_;  // ascending id
  std::map<uint32_t, Used> used_;
};

}  // namespace moe
