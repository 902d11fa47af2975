// The placement of one epoch: which workers exist (id, address, state) and, for every expert (layer,
// expert id) of every MoE layer, the replicas that host it with the share of its tokens each should take.
// A plain value type: planners return new tables, the coordinator publishes them.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "runtime/core/expert_types.h"

namespace moe {

// The same states as wire::WorkerState.
enum class WorkerState { Joining, Active, Draining, Dead };

const char* worker_state_name(WorkerState state);        // "joining", ...
WorkerState parse_worker_state(const std::string& name);  // throws PlacementError on an unknown name

struct PlacedWorker {
  uint32_t id = 0;
  std::string address;  // "host:port" where it serves forward requests
  WorkerState state = WorkerState::Joining;
  bool operator==(const PlacedWorker&) const = default;
};

struct Replica {
  uint32_t worker_id = 0;
  float share = 1.f;  // fraction of the expert's tokens
  bool operator==(const Replica&) const = default;
};

struct PlacementTable {
  uint64_t epoch = 0;                                   // 0: nothing placed yet
  std::vector<PlacedWorker> workers;                    // ascending id
  std::map<ExpertKey, std::vector<Replica>> assignments;  // replicas ascending worker id
  uint64_t weight_version = 1;                          // the weights this epoch serves (update-weights)
  // A layer-by-layer update-weights under way: the MoE layers already served in the new version (every
  // other layer is in weight_version). Empty otherwise.
  std::map<int32_t, uint64_t> layer_versions;

  bool operator==(const PlacementTable&) const = default;

  // The weight version `layer` is served in.
  uint64_t version_of(int32_t layer) const {
    auto it = layer_versions.find(layer);
    return it == layer_versions.end() ? weight_version : it->second;
  }
  const PlacedWorker* find_worker(uint32_t id) const;
  // Experts hosted by `worker_id`, ascending.
  std::vector<ExpertKey> experts_on(uint32_t worker_id) const;
  bool hosts(uint32_t worker_id, ExpertKey key) const;
  // Experts `worker_id` hosts in `next` but not in this table (what a prepare must load).
  std::vector<ExpertKey> gained_by(uint32_t worker_id, const PlacementTable& next) const;
  // Sorts workers and each expert's replicas by id.
  void normalise();
  // Gives each replica of `key` the share 1 / replicas.
  void set_equal_shares(ExpertKey key);
};

}  // namespace moe
