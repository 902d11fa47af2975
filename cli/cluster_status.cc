// The status table (see cluster_status.h).
#include "cli/cluster_status.h"

#include <algorithm>
#include <iomanip>
#include <map>
#include <sstream>
#include <vector>

#include "runtime/placement/placement_wire.h"
#include "runtime/client/coordinator_queries.h"

namespace moe::cli {

namespace {


// "L0:0-3,8 L1:0-3" from a list of expert refs.
std::string compact_experts(capnp::List<wire::ExpertRef>::Reader hosted) {
  std::map<int32_t, std::vector<int32_t>> by_layer;
  for (auto e : hosted) by_layer[e.getLayer()].push_back(e.getExpert());
  std::ostringstream text;
  for (auto& [layer, experts] : by_layer) {
    std::sort(experts.begin(), experts.end());
    if (text.tellp() > 0) text << ' ';
    text << 'L' << layer << ':';
    for (size_t i = 0; i < experts.size();) {
      size_t j = i;
      while (j + 1 < experts.size() && experts[j + 1] == experts[j] + 1) ++j;
      if (i > 0) text << ',';
      text << experts[i];
      if (j > i) text << '-' << experts[j];
      i = j + 1;
    }
  }
  return text.str().empty() ? "-" : text.str();
}

}  // namespace

void print_cluster_status(const std::string& coordinator, wire::StatusReply::Reader status, std::ostream& out) {
  out << "cluster " << coordinator << "  model " << status.getModelName().cStr() << "  epoch " << status.getEpoch()
      << "  workers " << status.getWorkers().size() << "  weights v" << status.getWeightVersion() << " ("
      << status.getWeightSource().cStr() << ")" << (status.getDeterministic() ? "  mode deterministic" : "") << "\n";
  if (status.getWeightUpdate().size() > 0) out << "update-weights: " << status.getWeightUpdate().cStr() << "\n";
  if (status.getLayersTotal() > 0) {
    out << "layer by layer: " << status.getLayersUpdated() << "/" << status.getLayersTotal() << " MoE layers on v"
        << status.getLayersVersion() << " (" << status.getLayersSource().cStr() << "), the rest on v"
        << status.getWeightVersion() << "\n";
  }
  out << std::left << std::setw(4) << "ID" << std::setw(12) << "NAME" << std::setw(10) << "STATE" << std::setw(23)
      << "ADDRESS" << std::setw(8) << "BACKEND" << std::setw(9) << "EXPERTS" << std::setw(10) << "LEASE_MS"
      << std::setw(7) << "EPOCH" << std::setw(9) << "WEIGHTS" << "HOSTED\n";
  for (auto w : status.getWorkers()) {
    auto info = w.getInfo();
    out << std::left << std::setw(4) << info.getId() << std::setw(12) << w.getName().cStr() << std::setw(10)
        << worker_state_name(info.getState()) << std::setw(23) << info.getAddress().cStr() << std::setw(8)
        << w.getBackend().cStr() << std::setw(9) << w.getHosted().size() << std::setw(10) << w.getLeaseRemainingMs()
        << std::setw(7) << status.getEpoch() << std::setw(9) << ("v" + std::to_string(w.getWeightVersion()))
        << compact_experts(w.getHosted()) << "\n";
  }
  for (auto b : status.getBalance()) {
    out << "layer " << b.getLayer() << " imbalance (max/mean worker load) " << std::fixed << std::setprecision(2)
        << b.getImbalance() << "\n";
  }
}

int run_cluster_status(const std::string& coordinator, std::chrono::milliseconds timeout, std::ostream& out,
                       std::shared_ptr<TlsContext> tls, const std::string& cluster_token) {
  Frame reply = query_status(coordinator, timeout, std::move(tls), cluster_token);
  print_cluster_status(coordinator, reply.envelope().getStatusReply(), out);
  return 0;
}

}  // namespace moe::cli
