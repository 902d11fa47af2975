// The slot view of one MoE layer that the balancer plans on: W workers x S slots, each slot empty or
// holding one expert id, plus the share of that expert's tokens the slot takes. Slots are per layer per
// worker (a worker offering S slots hosts at most S experts of every layer), so a slot's content changing
// is one expert's weights moving over the network.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace moe {

inline constexpr int32_t kEmptySlot = -1;

struct SlotGrid {
  int workers = 0;
  int slots = 0;                 // per worker
  std::vector<int32_t> experts;  // [worker * slots + slot]: expert id or kEmptySlot

  SlotGrid() = default;
  SlotGrid(int workers, int slots);  // all empty; throws PlacementError on workers or slots < 1
  int32_t& at(int worker, int slot) { return experts[static_cast<size_t>(worker) * slots + slot]; }
  int32_t at(int worker, int slot) const { return experts[static_cast<size_t>(worker) * slots + slot]; }
  bool hosts(int worker, int32_t expert) const;
  bool operator==(const SlotGrid&) const = default;
};

// Expert e on worker e * W / E (for E = 256, W = 32: e / 8), in ascending slots; the rest empty.
// Throws PlacementError when E experts do not fit (some worker would need more than S slots).
SlotGrid contiguous_grid(int experts, int workers, int slots);

// Copies of each expert 0..experts-1 in the grid. Throws PlacementError on an id outside [0, experts)
// or an expert twice on one worker.
std::vector<int> copy_counts(const SlotGrid& grid, int experts);

// Slots whose content differs between two grids of the same shape (throws PlacementError otherwise).
int slots_changed(const SlotGrid& before, const SlotGrid& after);

// Tokens per worker when each slot takes shares[slot] of its expert's load (shares indexed like experts).
std::vector<double> worker_loads(const SlotGrid& grid, std::span<const double> loads, std::span<const double> shares);

// max / mean of worker loads; 1 when all are zero.
double imbalance(std::span<const double> worker_loads);

}  // namespace moe
