// The client's copy of one placement epoch: the coordinator's PlacementTable (decoded and checked by
// placement_from_wire, the same model the coordinator plans with and the worker commits), with the
// lookups a client needs and the replica choice of runtime/placement/replica_chooser.h.
#pragma once

#include <cstdint>
#include <set>
#include <vector>

#include "runtime/placement/placement_table.h"
#include "runtime/wire/moe.capnp.h"

namespace moe {

class ClientPlacement {
 public:
  ClientPlacement() = default;  // epoch 0: nothing placed
  // Throws PlacementError when the placement breaks the table's invariants (a replica on a worker it does
  // not list, an expert listed twice, ...), WireError when a worker's address is over the cap.
  explicit ClientPlacement(wire::Placement::Reader placement);
  explicit ClientPlacement(PlacementTable table);

  const PlacementTable& table() const { return table_; }
  uint64_t epoch() const { return table_.epoch; }
  uint64_t weight_version() const { return table_.weight_version; }  // the weights the epoch serves (1 at first)
  // The weight version `layer` is served in (Placement.layerVersions: a layer-by-layer update under way).
  uint64_t version_of(int32_t layer) const { return table_.version_of(layer); }
  const std::vector<PlacedWorker>& workers() const { return table_.workers; }  // ascending id
  // Replicas of (layer, expert), ascending worker id; empty when it is not placed.
  const std::vector<Replica>& replicas(int32_t layer, int32_t expert) const;

  // The worker that should compute (layer, expert) for token `token` (choose_replica); -1 when the expert
  // has no replica at all.
  int64_t choose_worker(int32_t layer, int32_t expert, int32_t token, const std::set<uint32_t>& avoid = {}) const;
  // Throws PlacementError when `id` is not in the placement.
  const PlacedWorker& worker(uint32_t id) const;

 private:
  PlacementTable table_;
};

}  // namespace moe
