// The one rule for which replica of an expert computes a given token, over the one placement model
// (PlacementTable). Clients route with it (ClusterDispatcher, through ClientPlacement); whatever needs to
// predict where a token goes uses the same function on the same table.
#pragma once

#include <cstdint>
#include <set>

#include "runtime/placement/placement_table.h"

namespace moe {

// The worker that should compute `key` for token `token`: a replica drawn in proportion to the shares by
// a hash of (layer, expert, token), so the choice is deterministic and a replicated expert's tokens
// spread over its replicas as the shares say. Replicas on dead workers and those in `avoid` are passed
// over while another replica is left (then dead-but-not-avoided, then anything). -1 when `key` has no
// replica.
int64_t choose_replica(const PlacementTable& table, ExpertKey key, int32_t token,
                       const std::set<uint32_t>& avoid = {});

}  // namespace moe
