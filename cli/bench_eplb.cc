// The EPLB baseline (see bench_eplb.h), following eplb.py's balanced_packing, replicate_experts and
// rebalance_experts_hierarchical step by step.
#include "cli/bench_eplb.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <stdexcept>
#include <string>

namespace moe {
namespace {

struct Packing {
  std::vector<int> pack, rank;  // per item
};

// Items (by weight, heaviest first) to the lightest pack that is not full; every pack gets n / packs items.
Packing balanced_packing(const std::vector<double>& w, int packs) {
  const int n = static_cast<int>(w.size());
  const int per_pack = n / packs;
  Packing p{std::vector<int>(n), std::vector<int>(n)};
  if (per_pack == 1) {
    std::iota(p.pack.begin(), p.pack.end(), 0);
    return p;
  }
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return w[a] > w[b]; });
  std::vector<double> load(packs, 0.0);
  std::vector<int> items(packs, 0);
  for (int i : order) {
    int best = -1;
    for (int k = 0; k < packs; ++k)
      if (items[k] < per_pack && (best < 0 || load[k] < load[best])) best = k;
    p.pack[i] = best;
    p.rank[i] = items[best]++;
    load[best] += w[i];
  }
  return p;
}

struct Replication {
  std::vector<int> phy2log;  // [physical]
  std::vector<int> count;    // [logical]
};

// The first n logical experts once each, then each further copy to the expert with the most load per copy.
Replication replicate_experts(const std::vector<double>& w, int physical) {
  const int n = static_cast<int>(w.size());
  Replication r{std::vector<int>(physical), std::vector<int>(n, 1)};
  std::iota(r.phy2log.begin(), r.phy2log.begin() + n, 0);
  for (int i = n; i < physical; ++i) {
    int best = 0;
    for (int e = 1; e < n; ++e)
      if (w[e] / r.count[e] > w[best] / r.count[best]) best = e;
    r.phy2log[i] = best;
    ++r.count[best];
  }
  return r;
}

}  // namespace

EplbLayer eplb_layer(const std::vector<double>& loads, int workers, int slots, const EplbOptions& o) {
  const int E = static_cast<int>(loads.size());
  const int physical = workers * slots;
  auto fail = [&](const std::string& m) {
    throw std::invalid_argument("EPLB baseline: " + m + " (experts " + std::to_string(E) + ", workers " +
                                std::to_string(workers) + " x " + std::to_string(slots) + " slots, groups " +
                                std::to_string(o.groups) + ", nodes " + std::to_string(o.nodes) + ")");
  };
  if (o.groups < 1 || o.nodes < 1 || E % o.groups || workers % o.nodes || o.groups % o.nodes)
    fail("need experts % groups == 0, workers % nodes == 0 and groups % nodes == 0");
  if (physical < E) fail("fewer slots than experts");
  if (physical % o.nodes) fail("slots do not divide among the nodes");
  const int group_size = E / o.groups, groups_per_node = o.groups / o.nodes;
  const int per_node_log = E / o.nodes, per_node_phy = physical / o.nodes, workers_per_node = workers / o.nodes;

  // Step 1: groups onto nodes; mlog = expert ids renumbered node by node.
  std::vector<double> group_load(o.groups, 0.0);
  for (int e = 0; e < E; ++e) group_load[e / group_size] += loads[e];
  const Packing gp = balanced_packing(group_load, o.nodes);
  std::vector<int> mlog2log(E);
  for (int e = 0; e < E; ++e) {
    const int g = e / group_size;
    const int mlog = (gp.pack[g] * groups_per_node + gp.rank[g]) * group_size + e % group_size;
    mlog2log[mlog] = e;
  }

  EplbLayer out;
  out.grid = SlotGrid(workers, slots);
  std::vector<double> worker_load(workers, 0.0);
  for (int node = 0; node < o.nodes; ++node) {
    // Step 2: replicate inside the node.
    std::vector<double> w(per_node_log);
    for (int i = 0; i < per_node_log; ++i) w[i] = loads[mlog2log[node * per_node_log + i]];
    const Replication rep = replicate_experts(w, per_node_phy);
    // Step 3: the node's copies onto its workers.
    std::vector<double> copy_load(per_node_phy);
    for (int p = 0; p < per_node_phy; ++p) copy_load[p] = w[rep.phy2log[p]] / rep.count[rep.phy2log[p]];
    const Packing pp = balanced_packing(copy_load, workers_per_node);
    for (int p = 0; p < per_node_phy; ++p) {
      const int worker = node * workers_per_node + pp.pack[p];
      out.grid.at(worker, pp.rank[p]) = mlog2log[node * per_node_log + rep.phy2log[p]];
      worker_load[worker] += copy_load[p];
    }
  }
  out.imbalance = imbalance(worker_load);
  return out;
}

int eplb_slots_changed(const SlotGrid& before, const SlotGrid& after) {
  int changed = 0;
  for (int w = 0; w < after.workers; ++w) {
    std::map<int32_t, int> held;
    for (int s = 0; s < before.slots; ++s)
      if (before.at(w, s) != kEmptySlot) ++held[before.at(w, s)];
    for (int s = 0; s < after.slots; ++s) {
      const int32_t e = after.at(w, s);
      if (e == kEmptySlot) continue;
      auto it = held.find(e);
      if (it != held.end() && it->second > 0) {
        --it->second;
      } else {
        ++changed;
      }
    }
  }
  return changed;
}

}  // namespace moe
