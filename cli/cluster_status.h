// `moectl status --cluster HOST:PORT`: the coordinator's statusReply as a table (workers, state,
// address, experts hosted, lease left, the cluster's epoch, per-layer balance).
#pragma once

#include <chrono>
#include <ostream>
#include <string>

#include "runtime/net/tls_context.h"
#include "runtime/wire/moe.capnp.h"

namespace moe::cli {

// Prints `status` to `out`.
void print_cluster_status(const std::string& coordinator, wire::StatusReply::Reader status, std::ostream& out);

// Asks the coordinator and prints the table; throws (NetError, RemoteError) when it is unreachable or
// refuses, which moectl turns into a non-zero exit.
int run_cluster_status(const std::string& coordinator, std::chrono::milliseconds timeout, std::ostream& out,
                       std::shared_ptr<TlsContext> tls = nullptr, const std::string& cluster_token = {});

}  // namespace moe::cli
