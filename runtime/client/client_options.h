// Options of a ClusterClient: how long a forward call may take, what dtype tokens travel in, how
// patient connects, single requests and retries are, and where it learns the model and placement
// (ClusterEndpoints: the coordinator first, then workers).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "runtime/net/tls_context.h"
#include "runtime/wire/framing.h"
#include "runtime/wire/moe.capnp.h"

namespace prometheus {
class Registry;
}

namespace moe {

struct ClusterClientOptions {
  std::chrono::milliseconds deadline{10000};         // per forward call, retries included
  wire::DType wire_dtype = wire::DType::BF16;        // tokens and partial sums on the wire
  std::chrono::milliseconds connect_timeout{2000};   // per TCP connect (coordinator or worker)
  std::chrono::milliseconds request_timeout{3000};   // per worker request, capped by the call's deadline
  std::chrono::milliseconds backoff_initial{2};      // sleep before a retry that has nothing new to try
  std::chrono::milliseconds backoff_max{200};
  unsigned io_threads = 2;                           // threads of the client's own io pool
  FrameLimits frame_limits{};                        // also bounds each forward request: bigger shards are split
  prometheus::Registry* registry = nullptr;          // client metrics go here when set
  std::string cluster_token;                         // sent with every forward (workers with one require it)
  std::shared_ptr<TlsContext> tls;                   // mutual TLS on every connection (nullptr: plain TCP)
  std::string transport = "tcp";                     // forward requests to workers: tcp | ucx (data_link.h)
};

// Where a client asks for the model (getModel) and the placement (getPlacement): the coordinator when it
// answers, else these workers in order (a worker answers from what the coordinator gave it: the model it
// adopted and the last placement it committed). Either may be empty, not both.
struct ClusterEndpoints {
  std::string coordinator;           // HOST:PORT
  std::vector<std::string> workers;  // HOST:PORT each
};

}  // namespace moe
