// Reassignment after workers die (or when experts are unplaced for lack of capacity): only the replicas
// the dead workers held move, plus the experts the table leaves unplaced; every other replica stays where it
// is unless it is a surplus copy evicted to make room. Deterministic.
//
// Order: first every orphan (an expert left with no replica: all its holders died, or it was unplaced),
// highest load first (then biggest, then key), each onto the survivor with the fewest bytes (then experts)
// that has a slot and the memory for it; when none has, a surplus replica (a further copy of an expert
// that keeps another one) on a survivor is evicted to make room, the lowest load per copy first. Then the
// lost further copies of experts that kept a replica, where a survivor still has room (never evicting).
// An orphan that still finds no room stays unplaced: the result is the best partial placement, and
// unplaced_experts (placement_capacity.h) names what it lacks. Slots count copies over all layers.
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "runtime/placement/expert_catalog.h"
#include "runtime/placement/placement_table.h"

namespace moe {

// Returns the table of epoch table.epoch + 1 without the dead workers. `survivors` are the workers that
// may receive experts (with their capacity); a survivor missing from the table is added (active when it
// receives experts, else joining); table workers that are neither dead nor survivors keep their experts
// and receive none. `loads` (tokens per expert, any unit; missing = 0) orders orphans and evictions.
// Touched experts get equal shares. Throws PlacementError when a worker is both dead and a survivor.
PlacementTable reassign_lost(const PlacementTable& table, const std::vector<uint32_t>& dead,
                             const std::vector<WorkerCapacity>& survivors, const ExpertCatalog& catalog,
                             const std::map<ExpertKey, double>& loads = {});

}  // namespace moe
