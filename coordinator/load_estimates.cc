// LoadEstimates (see load_estimates.h).
#include "coordinator/load_estimates.h"

#include <algorithm>

namespace moe {

void LoadEstimates::add_window(uint32_t worker_id, uint32_t window_ms, const std::map<ExpertKey, uint64_t>& tokens) {
  if (window_ms == 0) return;
  auto& rates = rates_[worker_id];
  const double seconds = window_ms / 1000.0;
  for (auto& [key, rate] : rates) {
    auto it = tokens.find(key);
    const double now = it == tokens.end() ? 0.0 : static_cast<double>(it->second) / seconds;
    rate = alpha_ * now + (1.0 - alpha_) * rate;
  }
  for (const auto& [key, count] : tokens) {
    if (!rates.count(key)) rates[key] = static_cast<double>(count) / seconds;  // first sighting: no history
    if (count > 0) departed_.erase(key);  // served again: live estimates take over
  }
}

void LoadEstimates::forget_worker(uint32_t worker_id) {
  auto it = rates_.find(worker_id);
  if (it == rates_.end()) return;
  for (const auto& [key, rate] : it->second) departed_[key] += rate;
  rates_.erase(it);
}

std::map<ExpertKey, double> LoadEstimates::per_expert_with_departed() const {
  std::map<ExpertKey, double> out = per_expert();
  for (const auto& [key, rate] : departed_) {
    double& live = out[key];
    live = std::max(live, rate);
  }
  return out;
}

std::map<ExpertKey, double> LoadEstimates::per_expert() const {
  std::map<ExpertKey, double> out;
  for (const auto& [worker, rates] : rates_) {
    for (const auto& [key, rate] : rates) out[key] += rate;
  }
  return out;
}

std::map<uint32_t, double> expected_worker_loads(const PlacementTable& table, const std::map<ExpertKey, double>& loads,
                                                 int32_t layer) {
  std::map<uint32_t, double> out;
  for (const auto& [key, replicas] : table.assignments) {
    if (key.layer != layer) continue;
    auto it = loads.find(key);
    const double load = it == loads.end() ? 0.0 : it->second;
    for (const auto& replica : replicas) out[replica.worker_id] += load * replica.share;
  }
  return out;
}

double expected_imbalance(const PlacementTable& table, const std::map<ExpertKey, double>& loads, int32_t layer) {
  const auto per_worker = expected_worker_loads(table, loads, layer);
  double total = 0.0, peak = 0.0;
  for (const auto& [worker, load] : per_worker) {
    total += load;
    peak = std::max(peak, load);
  }
  if (total <= 0.0 || per_worker.empty()) return 1.0;
  return peak * static_cast<double>(per_worker.size()) / total;
}

double max_expected_imbalance(const PlacementTable& table, const std::map<ExpertKey, double>& loads,
                              const std::vector<int32_t>& layers) {
  double worst = 1.0;
  for (int32_t layer : layers) worst = std::max(worst, expected_imbalance(table, loads, layer));
  return worst;
}

}  // namespace moe
