// Everything the coordinator is told on its command line (see coordinator_flags.h for the flags).
#pragma once

#include <cstdint>
#include <string>

#include "runtime/model/layer_source_factory.h"
#include "runtime/net/transport_options.h"

namespace moe {

struct CoordinatorConfig {
  std::string listen = "127.0.0.1:7400";  // HOST:PORT; port 0 picks a free one
  ModelRef model;                          // --model DIR or --synthetic NAME --seed S
  std::string state_file;                  // empty: no state file
  int replicas = 1;                        // copies of every expert (capped by the worker count)
  uint16_t metrics_port = 0;               // 0: no /metrics endpoint
  std::string cluster_token;               // every request must carry it (empty: none is checked)
  std::string cluster_token_file;          // read into cluster_token by finish_coordinator_config
  bool metrics_open = false;               // /metrics without the token even when one is set
  uint32_t heartbeat_ms = 500;
  uint32_t lease_ms = 3000;
  uint32_t grace_ms = 2000;
  uint32_t min_workers = 1;                // workers to wait for before the first placement
  uint32_t prepare_timeout_ms = 60000;     // how long gainers may take to load their experts
  uint32_t rpc_timeout_ms = 5000;          // connect, commit and release
  unsigned io_threads = 2;
  bool no_shared_storage = false;          // prepare names, per gained expert, the live workers holding it
                                           // (workers then stream weights from each other)
  bool no_layerwise = false;               // update-weights never goes layer by layer: a worker whose memory
                                           // cannot hold two versions of its experts refuses it (the old way)
  // Rebalancing (coordinator/rebalance_plan.h): a periodic check every rebalance_interval_ms rebalances when
  // the expected imbalance (max / mean worker load from the load estimates) of some layer passes the
  // threshold (0: never on its own; moectl rebalance still works).
  double rebalance_threshold = 1.25;
  uint32_t rebalance_interval_ms = 10000;
  double replica_budget = 1.5;             // expert copies per expert the rebalancer may use on average
  double load_ewma_alpha = 0.3;            // weight of the newest heartbeat window in the load estimates
  // A dead worker leaves status and metrics this long after it died (once no committed epoch lists it).
  uint32_t dead_worker_ttl_ms = 60000;
  // A coordinator that starts without a placement while workers report one they serve (it restarted, its
  // state file was lost or stale) adopts what they hold as soon as the reports cover the model, or after
  // this long, placing what is still missing (0: the lease).
  uint32_t adopt_wait_ms = 0;
  TransportOptions transport;              // TLS (every connection) and the server's bounds
  bool deterministic = false;              // ModelInfo.deterministic: clients and workers run the
                                           // deterministic mode (README, "Deterministic mode")
  uint32_t adopt_wait() const { return adopt_wait_ms ? adopt_wait_ms : lease_ms; }
};

}  // namespace moe
