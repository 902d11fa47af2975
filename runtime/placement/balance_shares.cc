// Optimal replica shares: experts with one copy are fixed load on their worker; the replicated ones are
// routed by a max flow (Dinic) under a per-worker bound, bisected down to the smallest feasible bound.
#include "runtime/placement/balance_shares.h"

#include <algorithm>
#include <limits>
#include <string>

#include "runtime/placement/placement_error.h"

namespace moe {
namespace {

class MaxFlow {
 public:
  explicit MaxFlow(int nodes) : adj_(nodes), level_(nodes), next_(nodes) {}

  int add_edge(int from, int to, double cap) {
    adj_[from].push_back(static_cast<int>(edges_.size()));
    edges_.push_back({to, cap, cap});
    adj_[to].push_back(static_cast<int>(edges_.size()));
    edges_.push_back({from, 0.0, 0.0});
    return static_cast<int>(edges_.size()) - 2;
  }
  void set_capacity(int edge, double cap) { edges_[edge].initial = cap; }
  double flow_on(int edge) const { return edges_[edge].initial - edges_[edge].cap; }

  double run(int source, int sink, double eps) {
    for (auto& e : edges_) e.cap = e.initial;
    double total = 0.0;
    while (build_levels(source, sink, eps)) {
      std::fill(next_.begin(), next_.end(), 0);
      while (double pushed = push(source, sink, std::numeric_limits<double>::infinity(), eps)) total += pushed;
    }
    return total;
  }

 private:
  struct Edge {
    int to;
    double cap;
    double initial;
  };

  bool build_levels(int source, int sink, double eps) {
    std::fill(level_.begin(), level_.end(), -1);
    std::vector<int> queue{source};
    level_[source] = 0;
    for (size_t i = 0; i < queue.size(); ++i) {
      for (int id : adj_[queue[i]]) {
        const Edge& e = edges_[id];
        if (e.cap > eps && level_[e.to] < 0) {
          level_[e.to] = level_[queue[i]] + 1;
          queue.push_back(e.to);
        }
      }
    }
    return level_[sink] >= 0;
  }

  double push(int node, int sink, double limit, double eps) {
    if (node == sink) return limit;
    for (int& i = next_[node]; i < static_cast<int>(adj_[node].size()); ++i) {
      int id = adj_[node][i];
      Edge& e = edges_[id];
      if (e.cap <= eps || level_[e.to] != level_[node] + 1) continue;
      double got = push(e.to, sink, std::min(limit, e.cap), eps);
      if (got > 0.0) {
        e.cap -= got;
        edges_[id ^ 1].cap += got;
        return got;
      }
    }
    return 0.0;
  }

  std::vector<Edge> edges_;
  std::vector<std::vector<int>> adj_;
  std::vector<int> level_;
  std::vector<int> next_;
};

}  // namespace

std::vector<double> optimal_shares(const SlotGrid& grid, std::span<const double> loads) {
  const int experts = static_cast<int>(loads.size());
  const std::vector<int> counts = copy_counts(grid, experts);
  std::vector<double> shares(grid.experts.size(), 0.0);
  std::vector<double> base(grid.workers, 0.0);
  std::vector<double> equal_load(grid.workers, 0.0);
  std::vector<int> replicated_index(experts, -1);
  std::vector<int> replicated;  // expert ids with >= 2 copies, ascending
  for (int e = 0; e < experts; ++e) {
    if (loads[e] < 0.0) throw PlacementError("expert " + std::to_string(e) + " has negative load " + std::to_string(loads[e]));
    if (counts[e] >= 2) {
      replicated_index[e] = static_cast<int>(replicated.size());
      replicated.push_back(e);
    }
  }
  double total = 0.0;
  for (int w = 0; w < grid.workers; ++w) {
    for (int s = 0; s < grid.slots; ++s) {
      int32_t e = grid.at(w, s);
      if (e == kEmptySlot) continue;
      size_t i = static_cast<size_t>(w) * grid.slots + s;
      shares[i] = 1.0 / counts[e];
      equal_load[w] += loads[e] / counts[e];
      total += loads[e] / counts[e];
      if (counts[e] == 1) base[w] += loads[e];
    }
  }
  double replicated_total = 0.0;
  for (int e : replicated) replicated_total += loads[e];
  if (replicated.empty() || replicated_total <= 0.0) return shares;

  // Nodes: 0 source, 1..R replicated experts, R+1..R+W workers, R+W+1 sink.
  const int r_count = static_cast<int>(replicated.size());
  const int sink = r_count + grid.workers + 1;
  MaxFlow flow(sink + 1);
  for (int r = 0; r < r_count; ++r) flow.add_edge(0, 1 + r, loads[replicated[r]]);
  std::vector<int> slot_edge(grid.experts.size(), -1);
  for (int w = 0; w < grid.workers; ++w) {
    for (int s = 0; s < grid.slots; ++s) {
      int32_t e = grid.at(w, s);
      if (e == kEmptySlot || counts[e] < 2) continue;
      slot_edge[static_cast<size_t>(w) * grid.slots + s] =
          flow.add_edge(1 + replicated_index[e], 1 + r_count + w, replicated_total);
    }
  }
  std::vector<int> worker_edge(grid.workers);
  for (int w = 0; w < grid.workers; ++w) worker_edge[w] = flow.add_edge(1 + r_count + w, sink, 0.0);

  const double eps = 1e-12 * total;
  auto feasible = [&](double bound) {
    for (int w = 0; w < grid.workers; ++w) flow.set_capacity(worker_edge[w], std::max(0.0, bound - base[w]));
    return flow.run(0, sink, eps) >= replicated_total * (1.0 - 1e-9);
  };
  double lo = std::max(*std::max_element(base.begin(), base.end()), total / grid.workers);
  double hi = *std::max_element(equal_load.begin(), equal_load.end());
  if (feasible(lo)) {
    hi = lo;
  } else {
    for (int i = 0; i < 60 && hi - lo > 1e-6 * hi; ++i) {
      double mid = 0.5 * (lo + hi);
      (feasible(mid) ? hi : lo) = mid;
    }
    if (!feasible(hi)) return shares;  // numerically stuck: the equal split is a valid answer
  }
  std::vector<double> sum(r_count, 0.0);
  for (size_t i = 0; i < slot_edge.size(); ++i) {
    if (slot_edge[i] < 0) continue;
    int r = replicated_index[grid.experts[i]];
    shares[i] = std::max(0.0, flow.flow_on(slot_edge[i])) / loads[replicated[r]];
    sum[r] += shares[i];
  }
  for (size_t i = 0; i < slot_edge.size(); ++i) {
    if (slot_edge[i] < 0) continue;
    int r = replicated_index[grid.experts[i]];
    if (loads[replicated[r]] <= 0.0 || sum[r] <= 0.0)
      shares[i] = 1.0 / counts[grid.experts[i]];
    else
      shares[i] /= sum[r];
  }
  return shares;
}

}  // namespace moe
