// The rebalance and drain requests of moectl (see cluster_admin.h).
#include "cli/cluster_admin.h"

#include <capnp/message.h>

#include <cstdio>
#include <filesystem>

#include "runtime/client/coordinator_queries.h"

namespace moe::cli {

namespace {

Frame ask(const AdminOptions& options, wire::Envelope::Which expected,
          const std::function<void(wire::Envelope::Builder)>& fill) {
  return query_coordinator(options.cluster, std::chrono::milliseconds(options.timeout_ms), expected, fill,
                           make_tls(options.transport), options.cluster_token);
}

}  // namespace

int run_rebalance(const AdminOptions& options, bool dry_run, std::ostream& out) {
  Frame frame = ask(options, wire::Envelope::REBALANCE_REPLY, [&](wire::Envelope::Builder envelope) {
    auto rebalance = envelope.initRebalance();
    rebalance.setDryRun(dry_run);
  });
  auto reply = frame.envelope().getRebalanceReply();
  char text[160];
  std::snprintf(text, sizeof text, "%sepoch %llu: %u expert copies %s, imbalance %.3f -> %.3f\n",
                dry_run ? "dry run at " : "", static_cast<unsigned long long>(reply.getEpoch()), reply.getExpertsMoved(),
                dry_run ? "would move" : "moved", reply.getImbalanceBefore(), reply.getImbalanceAfter());
  out << text;
  return 0;
}

int run_drain(const AdminOptions& options, uint32_t worker_id, std::ostream& out) {
  Frame frame = ask(options, wire::Envelope::ACK, [&](wire::Envelope::Builder envelope) {
    auto drain = envelope.initDrain();
    drain.setWorkerId(worker_id);
  });
  out << "worker " << worker_id << " drained (epoch " << frame.envelope().getAck().getEpoch() << ")\n";
  return 0;
}

int run_update_weights(const AdminOptions& options, const std::string& model_dir, std::ostream& out) {
  const std::string absolute = std::filesystem::absolute(model_dir).lexically_normal().string();
  Frame frame = ask(options, wire::Envelope::UPDATE_WEIGHTS_REPLY, [&](wire::Envelope::Builder envelope) {
    envelope.initUpdateWeights().setModel(absolute);
  });
  auto reply = frame.envelope().getUpdateWeightsReply();
  out << "weight version " << reply.getPreviousVersion() << " -> " << reply.getWeightVersion() << " (" << absolute
      << ") serves from epoch " << reply.getEpoch() << "\n";
  return 0;
}

}  // namespace moe::cli
