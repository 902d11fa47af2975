// The placement a starting coordinator adopts from the cluster itself: what the live workers report they
// hold when they register (after a coordinator restart, a lost or stale state file). Every reported copy
// is kept while its worker's declared slots and memory allow; experts nobody holds are placed like a
// first placement (least-filled worker with room) up to `replicas` copies. Pure and deterministic.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <vector>

#include "runtime/placement/expert_catalog.h"
#include "runtime/placement/placement_table.h"

namespace moe {

struct AdoptedPlacement {
  PlacementTable table;          // the given epoch; workers hosting experts active, the others joining
  size_t kept = 0;               // reported copies kept
  size_t dropped = 0;            // reported copies left out (over capacity, or not an expert of the model)
  size_t added = 0;              // copies placed anew (they must be loaded: a prepare)
};

// `hosted`: worker id -> experts it reports loaded (ids not in `workers` are ignored). Throws PlacementError
// naming the experts that no worker can take when the workers cannot hold the model.
AdoptedPlacement adopt_reported(const ExpertCatalog& catalog, const std::vector<WorkerCapacity>& workers,
                                const std::map<uint32_t, std::set<ExpertKey>>& hosted, int replicas, uint64_t epoch);

// True when every expert of `catalog` is in some set of `hosted` (the reports cover the model).
bool reports_cover(const ExpertCatalog& catalog, const std::map<uint32_t, std::set<ExpertKey>>& hosted);

}  // namespace moe
