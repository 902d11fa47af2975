// unplaced_experts, experts_text, check_capacity (see placement_capacity.h).
#include "runtime/placement/placement_capacity.h"

#include <map>

#include "runtime/placement/placement_check.h"
#include "runtime/placement/placement_error.h"

namespace moe {

std::vector<ExpertKey> unplaced_experts(const PlacementTable& table, const ExpertCatalog& catalog) {
  std::vector<ExpertKey> out;
  for (const auto& expert : catalog.experts) {
    auto it = table.assignments.find(expert.key);
    if (it == table.assignments.end() || it->second.empty()) out.push_back(expert.key);
  }
  return out;
}

std::string experts_text(const std::vector<ExpertKey>& experts, size_t first) {
  std::string out = std::to_string(experts.size()) + (experts.size() == 1 ? " expert" : " experts");
  for (size_t i = 0; i < experts.size() && i < first; ++i) out += (i == 0 ? ": " : ", ") + expert_name(experts[i]);
  if (experts.size() > first) out += ", ... (" + std::to_string(experts.size() - first) + " more)";
  return out;
}

void check_capacity(const PlacementTable& table, const std::vector<WorkerCapacity>& workers,
                    const ExpertCatalog& catalog) {
  std::map<uint32_t, std::pair<uint64_t, uint64_t>> used;  // worker -> (copies, bytes)
  for (const auto& [key, replicas] : table.assignments) {
    for (const auto& replica : replicas) {
      auto& [copies, bytes] = used[replica.worker_id];
      copies += 1;
      bytes += catalog.bytes_of(key);
    }
  }
  for (const auto& worker : workers) {
    const auto [copies, bytes] = used[worker.id];
    const std::string who = "placement of epoch " + std::to_string(table.epoch) + " gives worker " +
                            std::to_string(worker.id) + " (" + worker.address + ") ";
    if (worker.slots != 0 && copies > worker.slots) {
      throw PlacementError(who + std::to_string(copies) + " expert copies, more than its " +
                           std::to_string(worker.slots) + " slots");
    }
    if (worker.memory_bytes != 0 && bytes > worker.memory_bytes) {
      throw PlacementError(who + std::to_string(bytes) + " bytes of expert weights, more than its " +
                           std::to_string(worker.memory_bytes) + " bytes of memory");
    }
  }
}

}  // namespace moe
