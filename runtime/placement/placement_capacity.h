// What a placement owes the workers' declared capacity and the catalog: the experts a (partial) table
// leaves without a replica, a short text naming them for logs and errors, and the check that no worker
// holds more expert copies (counted over all layers) than its slots, nor more bytes than its memory.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "runtime/placement/expert_catalog.h"
#include "runtime/placement/placement_table.h"

namespace moe {

// Catalog experts with no replica in `table`, ascending.
std::vector<ExpertKey> unplaced_experts(const PlacementTable& table, const ExpertCatalog& catalog);

// "3 experts: (layer 0, expert 1), (layer 0, expert 4), ... (1 more)": the count and the first `first`.
std::string experts_text(const std::vector<ExpertKey>& experts, size_t first = 6);

// Throws PlacementError naming the first worker of `workers` (0 = no limit) that `table` gives more copies
// than its slots or more bytes than its memory, with both numbers. Workers not in `workers` are not checked.
void check_capacity(const PlacementTable& table, const std::vector<WorkerCapacity>& workers,
                    const ExpertCatalog& catalog);

}  // namespace moe
