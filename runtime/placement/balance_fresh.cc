// Plan from scratch (see balance_fresh.h): greedy counts, longest-piece-first packing, greedy matching of the
// packed workers onto the current ones by shared experts.
#include "runtime/placement/balance_fresh.h"

#include <algorithm>
#include <tuple>

namespace moe {

std::vector<int> greedy_replica_counts(std::span<const double> loads, int slots_total, int max_copies) {
  const int experts = static_cast<int>(loads.size());
  std::vector<int> counts(experts, 1);
  for (int spare = slots_total - experts; spare > 0; --spare) {
    int best = -1;
    for (int e = 0; e < experts; ++e) {
      if (counts[e] >= max_copies || loads[e] <= 0.0) continue;
      if (best < 0 || loads[e] / counts[e] > loads[best] / counts[best]) best = e;
    }
    if (best < 0) break;
    ++counts[best];
  }
  return counts;
}

SlotGrid fresh_grid(std::span<const double> loads, const SlotGrid& current) {
  const int W = current.workers, S = current.slots;
  std::vector<int> counts = greedy_replica_counts(loads, W * S, W);

  // Longest piece first onto the least loaded bin with a free slot that lacks the expert.
  std::vector<std::pair<double, int>> pieces;
  for (int e = 0; e < static_cast<int>(loads.size()); ++e)
    for (int c = 0; c < counts[e]; ++c) pieces.push_back({loads[e] / counts[e], e});
  std::stable_sort(pieces.begin(), pieces.end(), [](const auto& x, const auto& y) {
    return x.first != y.first ? x.first > y.first : x.second < y.second;
  });
  std::vector<std::vector<int32_t>> bins(W);
  std::vector<double> bin_load(W, 0.0);
  for (const auto& [piece, e] : pieces) {
    int best = -1;
    for (int b = 0; b < W; ++b) {
      if (static_cast<int>(bins[b].size()) >= S) continue;
      if (std::find(bins[b].begin(), bins[b].end(), e) != bins[b].end()) continue;
      if (best < 0 || bin_load[b] < bin_load[best]) best = b;
    }
    if (best < 0) continue;  // only a further copy of an expert already placed can be left out
    bins[best].push_back(e);
    bin_load[best] += piece;
  }

  // Match bins to workers, most shared experts first (ties: lowest bin, then lowest worker).
  std::vector<std::tuple<int, int, int>> pairs;  // (-overlap, bin, worker)
  for (int b = 0; b < W; ++b) {
    for (int w = 0; w < W; ++w) {
      int overlap = 0;
      for (int32_t e : bins[b]) overlap += current.hosts(w, e);
      pairs.push_back({-overlap, b, w});
    }
  }
  std::sort(pairs.begin(), pairs.end());
  std::vector<int> worker_of_bin(W, -1);
  std::vector<bool> worker_taken(W, false);
  for (const auto& [neg, b, w] : pairs) {
    if (worker_of_bin[b] >= 0 || worker_taken[w]) continue;
    worker_of_bin[b] = w;
    worker_taken[w] = true;
  }

  SlotGrid grid(W, S);
  for (int b = 0; b < W; ++b) {
    const int w = worker_of_bin[b];
    std::vector<int32_t> rest;
    for (int32_t e : bins[b]) {
      bool kept = false;
      for (int s = 0; s < S && !kept; ++s) {
        if (current.at(w, s) == e) {
          grid.at(w, s) = e;
          kept = true;
        }
      }
      if (!kept) rest.push_back(e);
    }
    std::sort(rest.begin(), rest.end());
    size_t next = 0;
    for (int s = 0; s < S && next < rest.size(); ++s)
      if (grid.at(w, s) == kEmptySlot) grid.at(w, s) = rest[next++];
  }
  return grid;
}

}  // namespace moe
