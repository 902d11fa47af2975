// PlacementTable <-> JSON, the form the coordinator's state file keeps:
//   {"epoch": 3, "workers": [{"id": 1, "address": "h:p", "state": "active"}],
//    "assignments": [{"layer": 0, "expert": 2, "replicas": [{"worker": 1, "share": 1.0}]}]}
#pragma once

#include <nlohmann/json.hpp>

#include "runtime/placement/placement_table.h"

namespace moe {

nlohmann::json placement_to_json(const PlacementTable& table);
// Throws PlacementError naming the missing / mistyped key, or a broken invariant (check_placement).
PlacementTable placement_from_json(const nlohmann::json& json);

}  // namespace moe
