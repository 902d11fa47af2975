// ClusterClient: one MoE layer's forward on a running cluster, behind the same MoeLayerExecutor
// interface as LocalEngine. Given only the coordinator's address it fetches the model (spec + routers)
// and the placement; forward() routes locally, plans the (token, expert) pairs by worker (a replicated
// expert's pairs spread over its replicas by share, deterministically from the token index), sends all
// worker shards at once over cached connections, and adds the partial sums up.
//
// Failures: a shard that fails (staleEpoch, expertNotHosted, notReady, overloaded, a worker-side
// deadline, a broken or closed connection, a request timeout) makes the client refresh the placement
// from the coordinator (keeping the cached one when the coordinator is unreachable) and send again only
// the pairs of the failed shards, with backoff, within the call's deadline. After the deadline it throws
// ClusterDeadlineError("deadline exceeded after N attempts: <last error>"). Errors a retry cannot fix
// (badRequest, unknownLayer, internal, unauthorized, a malformed reply) throw ClusterError at once. A
// call never returns a partial result. Thread-safe: many threads may call forward at once.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "runtime/client/client_metrics.h"
#include "runtime/client/client_options.h"
#include "runtime/client/client_placement.h"
#include "runtime/client/cluster_model.h"
#include "runtime/client/peer_links.h"
#include "runtime/engine/moe_layer_executor.h"
#include "runtime/net/io_pool.h"

namespace moe {

class ClusterError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ClusterDeadlineError : public ClusterError {
 public:
  using ClusterError::ClusterError;
};

class ClusterClient : public MoeLayerExecutor {
 public:
  // Connects to the coordinator and fetches model and placement. Throws NetError when the coordinator
  // cannot be reached, ClusterError when it will not give the model within options.deadline.
  explicit ClusterClient(const std::string& coordinator, ClusterClientOptions options = {});
  ~ClusterClient() override;

  const ModelSpec& spec() const override { return model_.spec; }
  Matrix forward(int32_t layer, const Matrix& x, RoutingResult* routing_out = nullptr) override;

  const ClusterModel& model() const { return model_; }
  const std::string& coordinator() const { return coordinator_; }
  const ClusterClientOptions& options() const { return options_; }
  // The cached placement (never null; epoch 0 before the cluster placed anything).
  std::shared_ptr<const ClientPlacement> placement() const;
  // Fetches the placement now. False (cache kept) when the coordinator is unreachable or not ready.
  bool refresh_placement();
  ClientStats stats() const { return metrics_.stats(); }

 private:
  struct Attempt;
  Frame call_coordinator(capnp::MallocMessageBuilder& request, wire::Envelope::Which expected,
                         std::chrono::milliseconds timeout);
  // Refreshes unless another thread already brought a placement newer than `planned_epoch`.
  void refresh_after_failure(uint64_t planned_epoch);
  Matrix run_forward(int32_t layer, const Matrix& x, RoutingResult& routing);

  std::string coordinator_;
  ClusterClientOptions options_;
  IoPool pool_;
  PeerLinks links_;
  ClientMetrics metrics_;
  ClusterModel model_;

  mutable std::mutex placement_mutex_;
  std::shared_ptr<const ClientPlacement> placement_;
  std::mutex refresh_mutex_;  // one placement fetch at a time
};

}  // namespace moe
