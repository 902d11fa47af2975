// check_placement: the table invariants, with messages naming the expert and the worker.
#include "runtime/placement/placement_check.h"

#include <algorithm>
#include <set>

#include "runtime/placement/placement_error.h"

namespace moe {

std::string expert_name(ExpertKey key) {
  return "(layer " + std::to_string(key.layer) + ", expert " + std::to_string(key.expert) + ")";
}

void check_placement(const PlacementTable& table) {
  const std::string where = "placement of epoch " + std::to_string(table.epoch);
  std::set<uint32_t> ids;
  for (const auto& worker : table.workers) {
    if (!ids.insert(worker.id).second) throw PlacementError(where + " lists worker " + std::to_string(worker.id) + " twice");
  }
  for (const auto& [key, replicas] : table.assignments) {
    if (replicas.empty()) throw PlacementError(where + ": expert " + expert_name(key) + " has no replica");
    std::set<uint32_t> seen;
    for (const auto& replica : replicas) {
      if (!ids.count(replica.worker_id)) {
        throw PlacementError(where + ": expert " + expert_name(key) + " is placed on worker " +
                             std::to_string(replica.worker_id) + ", which the placement does not list");
      }
      if (!seen.insert(replica.worker_id).second) {
        throw PlacementError(where + ": expert " + expert_name(key) + " lists worker " +
                             std::to_string(replica.worker_id) + " twice");
      }
      // Share 0 is a copy the balancer keeps loaded but sends nothing to (a spare slot): valid.
      if (!(replica.share >= 0.f && replica.share <= 1.f)) {
        throw PlacementError(where + ": expert " + expert_name(key) + " replica on worker " +
                             std::to_string(replica.worker_id) + " has share " + std::to_string(replica.share) +
                             ", expected [0, 1]");
      }
    }
    if (std::none_of(replicas.begin(), replicas.end(), [](const Replica& r) { return r.share > 0.f; })) {
      throw PlacementError(where + ": every replica of expert " + expert_name(key) + " has share 0");
    }
  }
}

}  // namespace moe
