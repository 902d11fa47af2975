// The invariants of a PlacementTable that every reader (wire, JSON) checks before trusting one.
#pragma once

#include <string>

#include "runtime/placement/placement_table.h"

namespace moe {

// "(layer 1, expert 3)" for messages.
std::string expert_name(ExpertKey key);

// Throws PlacementError on a duplicate worker id, an assignment without replicas, a replica naming a
// worker missing from `workers` or listed twice for one expert, or a share outside (0, 1].
void check_placement(const PlacementTable& table);

}  // namespace moe
