// `moectl rebalance --cluster HOST:PORT [--dry-run]`, `moectl drain --cluster HOST:PORT WORKER_ID` and
// `moectl update-weights --cluster HOST:PORT --model NEWDIR`: one request to the coordinator each, waiting
// for the change to be committed (or planned, on a dry run).
#pragma once

#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>

#include "runtime/net/transport_options.h"

namespace moe::cli {

struct AdminOptions {
  std::string cluster;        // coordinator HOST:PORT
  std::string cluster_token;  // empty: none
  int timeout_ms = 120000;    // the change includes loading experts
  TransportOptions transport; // --tls* flags
};

// Prints "epoch N: M expert copies moved, imbalance B -> A". Throws NetError / RemoteError.
int run_rebalance(const AdminOptions& options, bool dry_run, std::ostream& out);
// Prints "worker W drained (epoch N)". Throws NetError / RemoteError.
int run_drain(const AdminOptions& options, uint32_t worker_id, std::ostream& out);
// `moectl update-weights --model NEWDIR`: prints "weight version V -> W (NEWDIR) serves from epoch N" once
// the coordinator committed it. Throws NetError / RemoteError (a refusal names why).
int run_update_weights(const AdminOptions& options, const std::string& model_dir, std::ostream& out);

}  // namespace moe::cli
