// Reassignment after workers die: only the replicas the dead workers held move, each onto the survivor
// with the fewest bytes (then experts) that does not hold that expert yet and has a slot and the memory
// for it; every other replica stays where it is. Deterministic.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/placement/expert_catalog.h"
#include "runtime/placement/placement_table.h"

namespace moe {

// Returns the table of epoch table.epoch + 1 without the dead workers. `survivors` are the workers that
// may receive experts (with their capacity); a survivor missing from the table is added (active when it
// receives experts, else joining); table workers that are neither dead nor survivors keep their experts
// and receive none. A lost replica that no survivor can take is dropped while the expert keeps another
// replica; when an expert would be left with none, throws PlacementError naming it and each survivor's
// usage. Touched experts get equal shares.
PlacementTable reassign_lost(const PlacementTable& table, const std::vector<uint32_t>& dead,
                             const std::vector<WorkerCapacity>& survivors, const ExpertCatalog& catalog);

}  // namespace moe
