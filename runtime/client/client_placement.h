// The client's copy of one placement epoch: worker addresses and states, and the replicas (with shares)
// of every expert. It picks the worker for each (token, expert) deterministically from the token index,
// so that a replicated expert's tokens spread over its replicas in proportion to their shares.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "runtime/core/expert_types.h"
#include "runtime/wire/moe.capnp.h"

namespace moe {

struct ClientWorker {
  uint32_t id = 0;
  std::string address;  // "host:port"
  wire::WorkerState state = wire::WorkerState::JOINING;
};

struct ClientReplica {
  uint32_t worker = 0;
  float share = 0.f;
};

class ClientPlacement {
 public:
  ClientPlacement() = default;  // epoch 0: nothing placed
  // Throws WireError when an assignment names a worker the placement does not list.
  explicit ClientPlacement(wire::Placement::Reader placement);

  uint64_t epoch() const { return epoch_; }
  uint64_t weight_version() const { return weight_version_; }  // the weights the epoch serves (1 at first)
  // The weight version `layer` is served in (Placement.layerVersions: a layer-by-layer update under way).
  uint64_t version_of(int32_t layer) const {
    auto it = layer_versions_.find(layer);
    return it == layer_versions_.end() ? weight_version_ : it->second;
  }
  const std::map<uint32_t, ClientWorker>& workers() const { return workers_; }
  // Replicas of (layer, expert); empty when it is not placed.
  const std::vector<ClientReplica>& replicas(int32_t layer, int32_t expert) const;

  // The worker that should compute (layer, expert) for token `token`: a replica drawn in proportion to
  // the shares by a hash of (layer, expert, token). Replicas on dead workers and those in `avoid` are
  // passed over while another replica is left; -1 when the expert has no replica at all.
  int64_t choose_worker(int32_t layer, int32_t expert, int32_t token, const std::set<uint32_t>& avoid = {}) const;
  // Throws WireError when `worker` is not in the placement.
  const ClientWorker& worker(uint32_t id) const;

 private:
  uint64_t epoch_ = 0;
  uint64_t weight_version_ = 1;
  std::map<int32_t, uint64_t> layer_versions_;
  std::map<uint32_t, ClientWorker> workers_;
  std::map<ExpertKey, std::vector<ClientReplica>> replicas_;
};

}  // namespace moe
