// PlacementTable <-> the capnp Placement struct of runtime/wire/moe.capnp.
#pragma once

#include "runtime/placement/placement_table.h"
#include "runtime/wire/moe.capnp.h"

namespace moe {

wire::WorkerState to_wire(WorkerState state);
WorkerState from_wire(wire::WorkerState state);  // throws PlacementError on a value this build does not know
// "joining", "active", "draining", "dead"; "unknown" for a value this build does not know (for display).
const char* worker_state_name(wire::WorkerState state);

void placement_to_wire(const PlacementTable& table, wire::Placement::Builder out);
// Throws PlacementError on a replica naming a worker missing from `workers`, a duplicate worker id,
// a duplicate (layer, expert), or an assignment without replicas.
PlacementTable placement_from_wire(wire::Placement::Reader in);

}  // namespace moe
