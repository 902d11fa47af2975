// Turns a routing result into work: the flat (token, expert, weight) assignment list (shared expert
// included), the same grouped by expert, and grouped by worker with each token sent once per worker.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <vector>

#include "runtime/core/expert_types.h"
#include "runtime/routing/router.h"

namespace moe {

// Every routed (token, expert, weight), then the shared expert's (token, E, shared weight) if any.
// Assignments with the same token keep the router's order.
std::vector<TokenAssignment> make_assignments(const RoutingResult& routing, const ModelSpec& spec);

// Assignment indices grouped by expert id: result[e] lists the assignments of expert e, in token order.
std::vector<std::vector<int32_t>> group_by_expert(std::span<const TokenAssignment> assignments,
                                                  int32_t experts_per_layer);

// What one worker receives: the distinct tokens it needs (each once, ascending original index) and
// the assignments re-indexed to rows of that token list.
struct WorkerShard {
  std::vector<int32_t> tokens;               // original token indices
  std::vector<TokenAssignment> assignments;  // .token indexes into `tokens`
};

// worker_of(assignment index, assignment) -> worker id (>= 0). The callback receives the index so a
// client can spread a replicated expert over its replicas. Result keyed by worker id.
std::map<int32_t, WorkerShard> plan_by_worker(
    std::span<const TokenAssignment> assignments,
    const std::function<int32_t(size_t index, const TokenAssignment&)>& worker_of);

}  // namespace moe
