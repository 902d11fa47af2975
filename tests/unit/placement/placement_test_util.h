// Helpers for the placement tests: worker capacity lists and per-worker tallies of a table.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "runtime/placement/expert_catalog.h"
#include "runtime/placement/placement_table.h"

namespace moe::test {

inline std::vector<WorkerCapacity> workers(int count, uint64_t memory_bytes = 0, uint32_t slots = 0) {
  std::vector<WorkerCapacity> out;
  for (int i = 1; i <= count; ++i) {
    out.push_back({static_cast<uint32_t>(i), "127.0.0.1:" + std::to_string(7500 + i), memory_bytes, slots});
  }
  return out;
}

struct Tally {
  size_t experts = 0;
  uint64_t bytes = 0;
};

inline std::map<uint32_t, Tally> tally(const PlacementTable& table, const ExpertCatalog& catalog) {
  std::map<uint32_t, Tally> out;
  for (const auto& [key, replicas] : table.assignments) {
    for (const auto& replica : replicas) {
      out[replica.worker_id].experts += 1;
      out[replica.worker_id].bytes += catalog.bytes_of(key);
    }
  }
  return out;
}

}  // namespace moe::test
