// ClusterClient: one MoE layer's forward on a running cluster, behind the same MoeLayerExecutor
// interface as LocalEngine. Given the coordinator's address (and/or a list of workers) it fetches the
// model (spec + routers) and the placement; forward() routes locally, plans the (token, expert) pairs by
// worker (a replicated expert's pairs spread over its replicas by share, deterministically from the
// token index), sends all worker shards at once over cached connections, and adds the partial sums up.
// A call whose shards would exceed options.frame_limits is cut into chunks of whole tokens (shard_split.h)
// sent one chunk after the other; the output is the same as unsplit.
//
// Without the coordinator: model and placement come from the coordinator when it answers, else from
// the workers (the listed ones, then those of the cached placement), which answer from what the
// coordinator gave them; a worker's placement is taken only when its epoch is >= the cached one. A
// client that has a placement keeps serving while no one answers.
//
// Failures: a shard that fails (staleEpoch, expertNotHosted, notReady, overloaded, a worker-side
// deadline, a broken or closed connection, a request timeout) makes the client refresh the placement
// from the coordinator (keeping the cached one when the coordinator is unreachable) and send again only
// the pairs of the failed shards, with backoff, within the call's deadline. After the deadline it throws
// ClusterDeadlineError("deadline exceeded after N attempts: <last error>"). Pairs whose expert has no
// replica in the placement throw ClusterUnavailableError naming the experts: at once when a placement
// fetched during the call (epoch >= 1) still lacks them, else at the deadline. Errors a retry cannot fix
// (badRequest, unknownLayer, internal, unauthorized, a malformed reply, one token over the frame limit)
// throw ClusterError at once. A call never returns a partial result. Thread-safe: many threads may call forward at once.
//
// Weight versions (moectl update-weights): a call routes with one ModelInfo's routers (shared-expert gate
// included) and asks every worker for that weight version; a reply of another version is refused. When a
// retry finds the placement serving another version, the call starts over, whole, with that version's
// model (fetched then): its output is always one version's, never a mix. forward_versioned says which.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/client/client_metrics.h"
#include "runtime/client/client_options.h"
#include "runtime/client/client_placement.h"
#include "runtime/client/cluster_dispatcher.h"
#include "runtime/client/cluster_errors.h"
#include "runtime/client/cluster_model.h"
#include "runtime/client/peer_links.h"
#include "runtime/engine/moe_layer_executor.h"
#include "runtime/net/io_pool.h"

namespace moe {

class ClusterClient : public MoeLayerExecutor {
 public:
  // Fetches model and placement from the coordinator, else from the workers in order. Throws
  // ClusterError naming what each peer answered when none gives the model (waiting up to
  // options.deadline while one answers notReady).
  explicit ClusterClient(const std::string& coordinator, ClusterClientOptions options = {});
  ClusterClient(ClusterEndpoints endpoints, ClusterClientOptions options);
  ~ClusterClient() override;

  const ModelSpec& spec() const override { return spec_; }
  Matrix forward(int32_t layer, const Matrix& x, RoutingResult* routing_out = nullptr) override;
  // forward, and the weight version that computed the whole output.
  Matrix forward_versioned(int32_t layer, const Matrix& x, uint64_t* weight_version, RoutingResult* routing_out = nullptr);

  // The model the next call routes with (replaced, not changed, when the weights are updated).
  std::shared_ptr<const ClusterModel> model() const;
  const std::string& coordinator() const { return endpoints_.coordinator; }
  const ClusterEndpoints& endpoints() const { return endpoints_; }
  const ClusterClientOptions& options() const { return options_; }
  // The cached placement (never null; epoch 0 before the cluster placed anything).
  std::shared_ptr<const ClientPlacement> placement() const;
  // Fetches the placement now: from the coordinator, else from the first worker (listed, then of the
  // cached placement) whose committed epoch is >= the cached one. False (cache kept) when none answers.
  bool refresh_placement();
  ClientStats stats() const { return metrics_.stats(); }

 private:
  void fetch_model();
  // Fetches the model again when the cached one is older than `version` (once a call: it may still be
  // the old one while the coordinator switches). Never throws; keeps the cached model on failure.
  void refresh_model(int32_t layer, uint64_t version);
  // Coordinator, listed workers, then the workers of the cached placement (each address once).
  std::vector<std::string> metadata_peers() const;
  // Refreshes unless another thread already brought a placement newer than `planned_epoch`. True when
  // the cached placement is now one fetched after this call's failure (or newer).
  bool refresh_after_failure(uint64_t planned_epoch);
  // What a ClusterDispatcher of this client's calls uses: links, options, metrics, the placement cache.
  ClusterDispatchContext dispatch_context();

  ClusterEndpoints endpoints_;
  ClusterClientOptions options_;
  IoPool pool_;
  PeerLinks links_;  // coordinator, metadata, and forward requests over TCP
  std::optional<PeerLinks> ucx_links_;  // forward requests to workers with options.transport "ucx"
  PeerLinks& data_links() { return ucx_links_ ? *ucx_links_ : links_; }
  ClientMetrics metrics_;
  ModelSpec spec_;  // every version's (update-weights keeps the shapes)
  mutable std::mutex model_mutex_;
  std::shared_ptr<const ClusterModel> model_;
  std::mutex model_refresh_mutex_;  // one model fetch at a time

  mutable std::mutex placement_mutex_;
  std::shared_ptr<const ClientPlacement> placement_;
  std::mutex refresh_mutex_;  // one placement fetch at a time
};

}  // namespace moe
