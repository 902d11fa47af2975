// Every expert the cluster must place (routed 0..E-1 and the shared expert E, of every MoE layer) with
// the bytes its weights take on a worker, and the capacity a worker offers for them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/core/expert_types.h"
#include "runtime/model/model_spec.h"

namespace moe {

struct CatalogExpert {
  ExpertKey key;
  uint64_t bytes = 0;  // gate + up + down
};

struct ExpertCatalog {
  std::vector<CatalogExpert> experts;  // ascending key
  uint64_t bytes_of(ExpertKey key) const;  // throws PlacementError on an expert not in the catalog
};

// 3 * hidden * intermediate * bytes_per_param per expert (the shared expert with its own size).
ExpertCatalog expert_catalog(const ModelSpec& spec, size_t bytes_per_param);

// What one worker offers. 0 in either field means "no limit".
struct WorkerCapacity {
  uint32_t id = 0;
  std::string address;
  uint64_t memory_bytes = 0;
  uint32_t slots = 0;
};

}  // namespace moe
