// Assignment list, per-expert grouping and per-worker shards (see dispatch_plan.h).
#include "runtime/routing/dispatch_plan.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace moe {

std::vector<TokenAssignment> make_assignments(const RoutingResult& routing, const ModelSpec& spec) {
  const int64_t T = routing.num_tokens;
  const int32_t K = routing.top_k;
  const size_t routed = static_cast<size_t>(T * K);
  if (T < 0 || K < 0 || routing.topk_ids.size() != routed || routing.topk_weights.size() != routed) {
    throw std::invalid_argument(
        "routing result: expected " + std::to_string(routed) + " ids and weights for T=" +
        std::to_string(T) + ", K=" + std::to_string(K) + ", got " +
        std::to_string(routing.topk_ids.size()) + " ids and " +
        std::to_string(routing.topk_weights.size()) + " weights");
  }
  const size_t want_shared = spec.has_shared_expert ? static_cast<size_t>(T) : 0;
  if (routing.shared_weights.size() != want_shared) {
    throw std::invalid_argument("routing result: expected " + std::to_string(want_shared) +
                                " shared-expert weights (model has_shared_expert=" +
                                (spec.has_shared_expert ? "true" : "false") + "), got " +
                                std::to_string(routing.shared_weights.size()));
  }
  std::vector<TokenAssignment> out;
  out.reserve(routed + want_shared);
  for (int64_t t = 0; t < T; ++t) {
    for (int32_t j = 0; j < K; ++j) {
      const size_t i = static_cast<size_t>(t * K + j);
      const int32_t expert = routing.topk_ids[i];
      if (expert < 0 || expert >= spec.num_experts) {
        throw std::invalid_argument("routing result: token " + std::to_string(t) +
                                    " routed to expert " + std::to_string(expert) +
                                    ", valid ids are 0.." + std::to_string(spec.num_experts - 1));
      }
      out.push_back({static_cast<int32_t>(t), expert, routing.topk_weights[i]});
    }
  }
  for (size_t t = 0; t < want_shared; ++t) {
    out.push_back({static_cast<int32_t>(t), spec.shared_expert_id(), routing.shared_weights[t]});
  }
  return out;
}

std::vector<std::vector<int32_t>> group_by_expert(std::span<const TokenAssignment> assignments,
                                                  int32_t experts_per_layer) {
  if (experts_per_layer < 0) {
    throw std::invalid_argument("group_by_expert: experts_per_layer must be >= 0, got " +
                                std::to_string(experts_per_layer));
  }
  std::vector<std::vector<int32_t>> groups(static_cast<size_t>(experts_per_layer));
  for (size_t i = 0; i < assignments.size(); ++i) {
    const int32_t e = assignments[i].expert;
    if (e < 0 || e >= experts_per_layer) {
      throw std::invalid_argument("group_by_expert: assignment " + std::to_string(i) +
                                  " names expert " + std::to_string(e) + ", valid ids are 0.." +
                                  std::to_string(experts_per_layer - 1));
    }
    groups[e].push_back(static_cast<int32_t>(i));
  }
  // Indices were appended in assignment order; a stable sort by token keeps that order among equals.
  for (auto& g : groups) {
    std::stable_sort(g.begin(), g.end(), [&](int32_t a, int32_t b) {
      return assignments[a].token < assignments[b].token;
    });
  }
  return groups;
}

std::map<int32_t, WorkerShard> plan_by_worker(
    std::span<const TokenAssignment> assignments,
    const std::function<int32_t(size_t index, const TokenAssignment&)>& worker_of) {
  // Pass 1: which assignments each worker gets (in assignment order) and the tokens it needs.
  std::map<int32_t, std::vector<size_t>> by_worker;
  std::map<int32_t, WorkerShard> plan;
  for (size_t i = 0; i < assignments.size(); ++i) {
    const int32_t w = worker_of(i, assignments[i]);
    if (w < 0) {
      throw std::invalid_argument("plan_by_worker: assignment " + std::to_string(i) + " (token " +
                                  std::to_string(assignments[i].token) + ", expert " +
                                  std::to_string(assignments[i].expert) + ") mapped to worker " +
                                  std::to_string(w) + ", expected >= 0");
    }
    by_worker[w].push_back(i);
    plan[w].tokens.push_back(assignments[i].token);
  }
  // Pass 2: distinct ascending tokens per worker, and assignments re-indexed to rows of that list.
  for (auto& [w, shard] : plan) {
    std::sort(shard.tokens.begin(), shard.tokens.end());
    shard.tokens.erase(std::unique(shard.tokens.begin(), shard.tokens.end()), shard.tokens.end());
    const std::vector<size_t>& indices = by_worker[w];
    shard.assignments.reserve(indices.size());
    for (size_t i : indices) {
      TokenAssignment a = assignments[i];
      a.token = static_cast<int32_t>(
          std::lower_bound(shard.tokens.begin(), shard.tokens.end(), a.token) - shard.tokens.begin());
      shard.assignments.push_back(a);
    }
  }
  return plan;
}

}  // namespace moe
