// One round of a client's forward call: every worker shard is sent at once (one request per worker, on
// that worker's cached connection) and the round waits until each has its reply or its error.
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/client/client_placement.h"
#include "runtime/client/peer_links.h"
#include "runtime/model/tensor.h"
#include "runtime/routing/dispatch_plan.h"

namespace moe {

struct ShardOutcome {
  uint32_t worker = 0;
  std::string address;
  WorkerShard shard;
  std::exception_ptr error;  // connect failure, closed connection, timeout, encode failure
  Frame reply;               // when no error: the reply (may be an `error` envelope)
};

struct ShardRound {
  const ClientPlacement* placement = nullptr;
  int32_t layer = 0;
  wire::DType dtype = wire::DType::BF16;
  const Matrix* x = nullptr;
  std::chrono::milliseconds request_timeout{0};
  std::string_view cluster_token;  // sent with every shard when not empty (workers with a token check it)
  bool deterministic = false;      // ForwardRequest.deterministic: replies carry one row per pair
  uint64_t weight_version = 0;     // the weight version the call routed with (every shard asks for it)
};

// Sends every shard of `plan` (keyed by worker id) and returns one outcome per shard, in key order.
std::vector<ShardOutcome> send_shards(PeerLinks& links, const ShardRound& round,
                                      std::map<int32_t, WorkerShard> plan);

}  // namespace moe
