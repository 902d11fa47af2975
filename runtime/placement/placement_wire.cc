// Conversion of placement tables to and from their wire form, with the table's invariants checked.
#include "runtime/placement/placement_wire.h"

#include <string>

#include "runtime/placement/placement_check.h"
#include "runtime/placement/placement_error.h"
#include "runtime/wire/text_limits.h"

namespace moe {

wire::WorkerState to_wire(WorkerState state) {
  switch (state) {
    case WorkerState::Joining: return wire::WorkerState::JOINING;
    case WorkerState::Active: return wire::WorkerState::ACTIVE;
    case WorkerState::Draining: return wire::WorkerState::DRAINING;
    case WorkerState::Dead: return wire::WorkerState::DEAD;
  }
  return wire::WorkerState::DEAD;
}

WorkerState from_wire(wire::WorkerState state) {
  switch (state) {
    case wire::WorkerState::JOINING: return WorkerState::Joining;
    case wire::WorkerState::ACTIVE: return WorkerState::Active;
    case wire::WorkerState::DRAINING: return WorkerState::Draining;
    case wire::WorkerState::DEAD: return WorkerState::Dead;
  }
  throw PlacementError("unknown worker state " + std::to_string(static_cast<int>(state)) + " in a placement");
}

void placement_to_wire(const PlacementTable& table, wire::Placement::Builder out) {
  out.setEpoch(table.epoch);
  out.setWeightVersion(table.weight_version);
  auto layer_versions = out.initLayerVersions(static_cast<unsigned>(table.layer_versions.size()));
  unsigned l = 0;
  for (const auto& [layer, version] : table.layer_versions) {
    layer_versions[l].setLayer(layer);
    layer_versions[l++].setVersion(version);
  }
  auto workers = out.initWorkers(static_cast<unsigned>(table.workers.size()));
  for (unsigned i = 0; i < table.workers.size(); ++i) {
    workers[i].setId(table.workers[i].id);
    workers[i].setAddress(table.workers[i].address);
    workers[i].setState(to_wire(table.workers[i].state));
  }
  auto assignments = out.initAssignments(static_cast<unsigned>(table.assignments.size()));
  unsigned a = 0;
  for (const auto& [key, replicas] : table.assignments) {
    auto assignment = assignments[a++];
    assignment.setLayer(key.layer);
    assignment.setExpert(key.expert);
    auto list = assignment.initReplicas(static_cast<unsigned>(replicas.size()));
    for (unsigned r = 0; r < replicas.size(); ++r) {
      list[r].setWorkerId(replicas[r].worker_id);
      list[r].setShare(replicas[r].share);
    }
  }
}

PlacementTable placement_from_wire(wire::Placement::Reader in) {
  PlacementTable table;
  table.epoch = in.getEpoch();
  table.weight_version = in.getWeightVersion() != 0 ? in.getWeightVersion() : 1;
  for (auto lv : in.getLayerVersions()) {
    if (lv.getVersion() == 0 || !table.layer_versions.emplace(lv.getLayer(), lv.getVersion()).second) {
      throw PlacementError("placement of epoch " + std::to_string(table.epoch) + " lists layer " +
                           std::to_string(lv.getLayer()) + "'s weight version " + std::to_string(lv.getVersion()) +
                           (lv.getVersion() == 0 ? " (versions start at 1)" : " twice"));
    }
  }
  for (auto worker : in.getWorkers()) {
    check_text_length("placement epoch " + std::to_string(table.epoch) + ": worker " + std::to_string(worker.getId()) +
                          "'s address",
                      worker.getAddress(), kMaxAddressBytes);
    table.workers.push_back({worker.getId(), worker.getAddress().cStr(), from_wire(worker.getState())});
  }
  for (auto assignment : in.getAssignments()) {
    ExpertKey key{assignment.getLayer(), assignment.getExpert()};
    std::vector<Replica> replicas;
    for (auto replica : assignment.getReplicas()) replicas.push_back({replica.getWorkerId(), replica.getShare()});
    if (!table.assignments.emplace(key, std::move(replicas)).second) {
      throw PlacementError("placement of epoch " + std::to_string(table.epoch) + " lists expert (" +
                           std::to_string(key.layer) + ", " + std::to_string(key.expert) + ") twice");
    }
  }
  check_placement(table);
  return table;
}

const char* worker_state_name(wire::WorkerState state) {
  switch (state) {
    case wire::WorkerState::JOINING: return "joining";
    case wire::WorkerState::ACTIVE: return "active";
    case wire::WorkerState::DRAINING: return "draining";
    case wire::WorkerState::DEAD: return "dead";
  }
  return "unknown";
}

}  // namespace moe
