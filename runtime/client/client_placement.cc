// ClientPlacement: a decoded PlacementTable with throwing lookups; replica choice is choose_replica's.
#include "runtime/client/client_placement.h"

#include <string>
#include <utility>

#include "runtime/placement/placement_error.h"
#include "runtime/placement/placement_wire.h"
#include "runtime/placement/replica_chooser.h"

namespace moe {

namespace {
const std::vector<Replica> kNoReplicas;
}  // namespace

ClientPlacement::ClientPlacement(wire::Placement::Reader placement) : table_(placement_from_wire(placement)) {
  table_.normalise();
}

ClientPlacement::ClientPlacement(PlacementTable table) : table_(std::move(table)) { table_.normalise(); }

const std::vector<Replica>& ClientPlacement::replicas(int32_t layer, int32_t expert) const {
  auto it = table_.assignments.find(ExpertKey{layer, expert});
  return it == table_.assignments.end() ? kNoReplicas : it->second;
}

const PlacedWorker& ClientPlacement::worker(uint32_t id) const {
  if (const PlacedWorker* found = table_.find_worker(id)) return *found;
  throw PlacementError("placement epoch " + std::to_string(table_.epoch) + " has no worker " + std::to_string(id));
}

int64_t ClientPlacement::choose_worker(int32_t layer, int32_t expert, int32_t token,
                                       const std::set<uint32_t>& avoid) const {
  return choose_replica(table_, ExpertKey{layer, expert}, token, avoid);
}

}  // namespace moe
