// ClusterDispatcher: a MoeLayer's Dispatcher that computes one call's assignments on the workers of a
// cluster. It plans the (token, expert) pairs by worker from the client's cached placement (a replicated
// expert's pairs spread over its replicas), cuts them into frame-sized chunks (shard_split.h), sends the
// shards (shard_dispatch.h) and adds the replies up; pairs of failed shards are planned again after a
// placement refresh, with backoff, within the call's deadline (cluster_client.h says which failures are
// retried and which errors are thrown). It owns the call's buffers (the deterministic mode's per-pair
// rows) and its retry bookkeeping (workers to avoid, the last errors, experts without a replica): one
// dispatcher per call attempt.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "runtime/client/client_metrics.h"
#include "runtime/client/client_options.h"
#include "runtime/client/client_placement.h"
#include "runtime/client/cluster_errors.h"
#include "runtime/client/cluster_model.h"
#include "runtime/client/peer_links.h"
#include "runtime/engine/moe_layer.h"

namespace moe {

// Thrown by dispatch when the placement moved to another weight version than the call's during a
// retry: the caller starts the whole call again with that version's model.
struct WeightVersionMoved {};

// What a dispatcher uses of its client: connections, options, metrics and the placement cache.
struct ClusterDispatchContext {
  PeerLinks& links;
  const ClusterClientOptions& options;
  ClientMetrics& metrics;
  std::function<std::shared_ptr<const ClientPlacement>()> placement;  // the cached placement, never null
  // Refreshes the placement unless one newer than planned_epoch is cached already; true when the cached
  // one was fetched after this failure (or is newer).
  std::function<bool(uint64_t planned_epoch)> refresh_after_failure;
};

class ClusterDispatcher : public Dispatcher {
 public:
  // model: the version the call routed with (its deterministic flag, its layers' weight versions); it
  // must outlive the dispatcher. deadline: of the whole call.
  ClusterDispatcher(ClusterDispatchContext context, const ClusterModel& model,
                    std::chrono::steady_clock::time_point deadline);
  Matrix dispatch(int32_t layer, const Matrix& x, const std::vector<TokenAssignment>& assignments) override;

 private:
  struct Round;
  // Sends the `chunk` positions of the round's items (pairs planned on their workers), adds the replies
  // into the output; the pairs of failed shards go to `failed`.
  void run_chunk(Round& round, const std::vector<size_t>& chunk, std::vector<size_t>& failed);

  ClusterDispatchContext ctx_;
  const ClusterModel& model_;
  std::chrono::steady_clock::time_point deadline_;
  // The call's buffers and retry bookkeeping (reset by dispatch).
  std::vector<float> rows_;        // deterministic mode: [assignments, hidden], one row per pair
  std::set<uint32_t> avoid_;       // workers whose failure asks for another replica on the retry
  std::string last_error_;
  std::string last_answer_;        // the last error a worker answered with (kept past later timeouts)
  std::set<ExpertKey> unplaced_;   // experts of pending pairs with no replica in the last placement planned on
};

}  // namespace moe
