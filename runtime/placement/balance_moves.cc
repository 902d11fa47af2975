// The move search of the balancer's repair (see balance_moves.h): candidates are ranked by an estimate from
// the current flow, and the best few of each kind are scored exactly with a fresh max flow.
#include "runtime/placement/balance_moves.h"

#include <algorithm>

#include "runtime/placement/balance_flow.h"

namespace moe {
namespace {

constexpr int kHotExperts = 6;       // experts of the bottleneck set considered per step, heaviest first
constexpr int kExactPerKind = 12;    // candidates of each kind scored with a max flow per step

struct Move {
  int w = -1, s = -1;   // slot written with `expert` (1-slot move) or swapped (2-slot move)
  int v = -1, t = -1;   // the other slot of a swap, or -1
  int32_t expert = kEmptySlot;
  double estimate = 0.0;
  int cost = 0;         // change in slots differing from the original grid
};

void apply(SlotGrid& grid, const Move& m) {
  if (m.v < 0)
    grid.at(m.w, m.s) = m.expert;
  else
    std::swap(grid.at(m.w, m.s), grid.at(m.v, m.t));
}

// Keeps the `keep` best estimates (ties: fewer changed slots, then the order found: deterministic).
void keep_best(std::vector<Move>& moves, size_t keep) {
  std::stable_sort(moves.begin(), moves.end(), [](const Move& a, const Move& b) {
    return a.estimate != b.estimate ? a.estimate > b.estimate : a.cost < b.cost;
  });
  if (moves.size() > keep) moves.resize(keep);
}

}  // namespace

int repair_by_moves(SlotGrid& grid, const SlotGrid& original, std::span<const double> loads,
                    const MoveSearchLimits& limits) {
  const int W = grid.workers, S = grid.slots, E = static_cast<int>(loads.size());
  const double bound = limits.bound;
  int changed = slots_changed(original, grid);
  auto differs = [&](int w, int s, int32_t e) { return original.at(w, s) != e ? 1 : 0; };
  int moves = 0;
  for (;;) {
    LayerFlow flow(grid, loads);
    const FlowCut cut = flow.route(bound);
    const double small = 1e-9 * std::max(flow.total_load(), 1e-300);
    if (cut.unrouted <= small) break;
    const std::vector<double> tokens = flow.slot_tokens();
    const std::vector<int> counts = copy_counts(grid, E);
    std::vector<double> wl(W, 0.0);
    for (int w = 0; w < W; ++w)
      for (int s = 0; s < S; ++s) wl[w] += tokens[static_cast<size_t>(w) * S + s];

    // Experts whose every copy is in the bottleneck set: their tokens cannot leave it today.
    std::vector<bool> outside_copy(E, false);
    for (int w = 0; w < W; ++w)
      if (!cut.tight[w])
        for (int s = 0; s < S; ++s)
          if (int32_t e = grid.at(w, s); e != kEmptySlot) outside_copy[e] = true;
    std::vector<int32_t> hot;
    for (int e = 0; e < E; ++e)
      if (counts[e] > 0 && !outside_copy[e] && loads[e] > 0.0) hot.push_back(e);
    std::stable_sort(hot.begin(), hot.end(), [&](int32_t a, int32_t b) { return loads[a] > loads[b]; });
    if (hot.size() > kHotExperts) hot.resize(kHotExperts);

    std::vector<Move> singles, swaps;
    for (int32_t e : hot) {
      for (int v = 0; v < W; ++v) {
        if (cut.tight[v] || grid.hosts(v, e)) continue;
        for (int t = 0; t < S; ++t) {
          const int32_t c = grid.at(v, t);
          const double xc = tokens[static_cast<size_t>(v) * S + t];
          // 1 slot: a copy of e over a redundant replica or an empty slot on v.
          if (c == kEmptySlot || (counts[c] >= 2 && c != e)) {
            Move m{v, t, -1, -1, e, std::min({loads[e], bound - (wl[v] - xc), cut.unrouted}),
                   differs(v, t, e) - differs(v, t, c)};
            if (m.estimate > 0.0 && changed + m.cost <= limits.max_changed_slots) singles.push_back(m);
          }
          // 2 slots: e's heaviest copy in the set swapped with c.
          int w = -1, s = -1;
          for (int x = 0; x < W; ++x)
            for (int y = 0; y < S; ++y)
              if (grid.at(x, y) == e && cut.tight[x] &&
                  (w < 0 || tokens[static_cast<size_t>(x) * S + y] > tokens[static_cast<size_t>(w) * S + s]))
                w = x, s = y;
          if (w < 0 || c == e || (c != kEmptySlot && grid.hosts(w, c))) continue;
          const double xe = tokens[static_cast<size_t>(w) * S + s];
          const double overflow = std::max(0.0, wl[v] - xc + xe - bound);
          Move m{w, s, v, t, e, std::min(xe - xc - overflow, cut.unrouted),
                 differs(w, s, c) + differs(v, t, e) - differs(w, s, e) - differs(v, t, c)};
          if (m.estimate > 0.0 && changed + m.cost <= limits.max_changed_slots) swaps.push_back(m);
        }
      }
    }
    keep_best(singles, kExactPerKind);
    keep_best(swaps, kExactPerKind);
    singles.insert(singles.end(), swaps.begin(), swaps.end());

    const Move* best = nullptr;
    double best_score = 0.0;
    for (const Move& m : singles) {
      SlotGrid trial = grid;
      apply(trial, m);
      LayerFlow trial_flow(trial, loads);
      const double gain = cut.unrouted - trial_flow.route(bound).unrouted;
      if (gain <= small) continue;
      const double score = gain / std::max(m.cost, 1);
      if (!best || score > best_score * (1.0 + 1e-9)) best = &m, best_score = score;
    }
    if (!best) break;
    apply(grid, *best);
    changed += best->cost;
    ++moves;
  }
  return moves;
}

}  // namespace moe
