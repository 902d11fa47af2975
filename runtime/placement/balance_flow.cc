// The layer flow model (see balance_flow.h): Dinic max flow on source -> replicated expert -> worker -> sink.
#include "runtime/placement/balance_flow.h"

#include <algorithm>
#include <limits>
#include <string>

#include "runtime/placement/placement_error.h"

namespace moe {

class LayerFlow::MaxFlow {
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

  // Nodes reachable from `source` over edges with residual capacity above eps (after run).
  std::vector<bool> reachable(int source, double eps) const {
    std::vector<bool> seen(adj_.size(), false);
    std::vector<int> queue{source};
    seen[source] = true;
    for (size_t i = 0; i < queue.size(); ++i)
      for (int id : adj_[queue[i]])
        if (edges_[id].cap > eps && !seen[edges_[id].to]) {
          seen[edges_[id].to] = true;
          queue.push_back(edges_[id].to);
        }
    return seen;
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

LayerFlow::LayerFlow(const SlotGrid& grid, std::span<const double> loads)
    : grid_(grid), loads_(loads), counts_(copy_counts(grid, static_cast<int>(loads.size()))),
      base_(grid.workers, 0.0), replicated_index_(loads.size(), -1), slot_edge_(grid.experts.size(), -1) {
  for (int e = 0; e < static_cast<int>(loads.size()); ++e) {
    if (!(loads[e] >= 0.0))
      throw PlacementError("expert " + std::to_string(e) + " has load " + std::to_string(loads[e]) +
                           ", expected >= 0");
    if (counts_[e] >= 2) {
      replicated_index_[e] = static_cast<int>(replicated_.size());
      replicated_.push_back(e);
      replicated_total_ += loads[e];
    }
    if (counts_[e] >= 1) total_ += loads[e];
  }
  for (int w = 0; w < grid.workers; ++w)
    for (int s = 0; s < grid.slots; ++s)
      if (int32_t e = grid.at(w, s); e != kEmptySlot && counts_[e] == 1) base_[w] += loads[e];

  // Nodes: 0 source, 1..R replicated experts, R+1..R+W workers, R+W+1 sink.
  const int r_count = static_cast<int>(replicated_.size());
  const int sink = r_count + grid.workers + 1;
  flow_ = std::make_unique<MaxFlow>(sink + 1);
  for (int r = 0; r < r_count; ++r) flow_->add_edge(0, 1 + r, loads[replicated_[r]]);
  for (int w = 0; w < grid.workers; ++w)
    for (int s = 0; s < grid.slots; ++s) {
      int32_t e = grid.at(w, s);
      if (e == kEmptySlot || counts_[e] < 2) continue;
      slot_edge_[static_cast<size_t>(w) * grid.slots + s] =
          flow_->add_edge(1 + replicated_index_[e], 1 + r_count + w, replicated_total_ + 1.0);
    }
  worker_edge_.resize(grid.workers);
  for (int w = 0; w < grid.workers; ++w) worker_edge_[w] = flow_->add_edge(1 + r_count + w, sink, 0.0);
}

LayerFlow::~LayerFlow() = default;

FlowCut LayerFlow::route(double bound) {
  const int r_count = static_cast<int>(replicated_.size());
  const int sink = r_count + grid_.workers + 1;
  const double eps = 1e-12 * std::max(total_, 1e-300);
  FlowCut cut;
  cut.tight.assign(grid_.workers, false);
  for (int w = 0; w < grid_.workers; ++w) {
    flow_->set_capacity(worker_edge_[w], std::max(0.0, bound - base_[w]));
    if (base_[w] > bound) {
      cut.unrouted += base_[w] - bound;
      cut.tight[w] = true;
    }
  }
  const double routed = flow_->run(0, sink, eps);
  routed_ = true;
  const double left = replicated_total_ - routed;
  if (left > 1e-9 * std::max(total_, 1e-300)) {
    cut.unrouted += left;
    std::vector<bool> seen = flow_->reachable(0, eps);
    for (int w = 0; w < grid_.workers; ++w)
      if (seen[1 + r_count + w]) cut.tight[w] = true;
  }
  return cut;
}

double LayerFlow::min_max_load() {
  const int W = grid_.workers;
  double bound = std::max(*std::max_element(base_.begin(), base_.end()), total_ / W);
  for (int step = 0; step < 100; ++step) {
    FlowCut cut = route(bound);
    if (cut.unrouted <= 1e-9 * std::max(total_, 1e-300)) break;
    // The cut's workers must carry their fixed load plus every replicated expert with all copies among them.
    double forced = 0.0;
    int size = 0;
    for (int w = 0; w < W; ++w)
      if (cut.tight[w]) forced += base_[w], ++size;
    for (int e : replicated_) {
      bool inside = true;
      for (int w = 0; w < W && inside; ++w)
        if (!cut.tight[w] && grid_.hosts(w, e)) inside = false;
      if (inside) forced += loads_[e];
    }
    double next = size > 0 ? forced / size : bound;
    bound = std::max(next, bound * (1.0 + 1e-9));  // numerical safety: always progress
  }
  return bound;
}

std::vector<double> LayerFlow::shares() const {
  std::vector<double> out(grid_.experts.size(), 0.0);
  std::vector<double> sum(replicated_.size(), 0.0);
  for (size_t i = 0; i < out.size(); ++i) {
    int32_t e = grid_.experts[i];
    if (e == kEmptySlot) continue;
    out[i] = 1.0 / counts_[e];
    if (routed_ && slot_edge_[i] >= 0 && loads_[e] > 0.0) {
      out[i] = std::max(0.0, flow_->flow_on(slot_edge_[i])) / loads_[e];
      sum[replicated_index_[e]] += out[i];
    }
  }
  for (size_t i = 0; i < out.size(); ++i) {
    int32_t e = grid_.experts[i];
    if (e == kEmptySlot || !routed_ || slot_edge_[i] < 0 || loads_[e] <= 0.0) continue;
    double s = sum[replicated_index_[e]];
    out[i] = s > 0.0 ? out[i] / s : 1.0 / counts_[e];
  }
  return out;
}

std::vector<double> LayerFlow::slot_tokens() const {
  std::vector<double> out(grid_.experts.size(), 0.0);
  for (size_t i = 0; i < out.size(); ++i) {
    int32_t e = grid_.experts[i];
    if (e == kEmptySlot) continue;
    if (counts_[e] == 1)
      out[i] = loads_[e];
    else if (routed_)
      out[i] = std::max(0.0, flow_->flow_on(slot_edge_[i]));
  }
  return out;
}

}  // namespace moe
