// The coordinator's state file: the committed placement and the live workers (ids, addresses,
// capacities), as JSON written atomically (temporary file, fsync, rename, fsync of the folder):
//   {"format": 1, "next_worker_id": 4, "placement": {...placement_json...},
//    "workers": [{"id": 1, "address": "h:p", "name": "n", "backend": "cpu", "memory_bytes": 0,
//                 "slots": 0, "state": "active"}]}
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "coordinator/membership.h"
#include "runtime/placement/placement_table.h"

namespace moe {

struct SavedState {
  PlacementTable placement;
  std::vector<WorkerRecord> workers;  // live ones only
  uint32_t next_worker_id = 1;
  std::string weight_source;  // the ModelRef of placement.weight_version's weights ("" : the --model ones)
  std::string layer_source;   // the ModelRef of placement.layer_versions' version ("" when none)
};

// Throws std::runtime_error naming the path and why when the state file could not be written there: its
// folder is missing or not writable (checked by creating and removing a probe file beside it), or the
// path is a folder. Used at start and by --check-config.
void check_state_file_writable(const std::string& path);
// Throws std::runtime_error naming the path and the failing step (write, fsync, rename).
void save_state(const std::string& path, const SavedState& state);
// nullopt when the file does not exist; throws std::runtime_error naming the path on unreadable or
// invalid contents (PlacementError details included).
std::optional<SavedState> load_state(const std::string& path);

}  // namespace moe
