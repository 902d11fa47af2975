// Optimal replica shares: the flow of the layer's flow model at its smallest feasible bound.
#include "runtime/placement/balance_shares.h"

#include "runtime/placement/balance_flow.h"

namespace moe {

std::vector<double> optimal_shares(const SlotGrid& grid, std::span<const double> loads) {
  LayerFlow flow(grid, loads);
  flow.min_max_load();
  return flow.shares();
}

}  // namespace moe
