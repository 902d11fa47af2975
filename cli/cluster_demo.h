// `moectl demo`: a whole cluster on this machine (moe-coordinator + N moe-worker processes found next
// to moectl, on 127.0.0.1 with free ports) or, with --cluster, a running cluster (e.g. the
// docker-compose one, so its workers' load shows in Grafana), driven by a bounded stream of batches with skewed routing
// (x = noise + skew * router_row[hot expert], the hot expert drawn from a Zipf law) from several client
// threads through one ClusterClient; every output is checked against a LocalEngine in this process.
// Prints a running line every second and a closing summary; exit status 0 only with zero errors and
// zero mismatches.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>

#include "runtime/net/transport_options.h"

namespace moe::cli {

struct DemoOptions {
  std::string cluster;                // a running cluster's coordinator HOST:PORT; empty: start one here
  std::string cluster_token;          // sent with every forward (workers with --cluster-token require it)
  int workers = 3;
  std::string model_dir;              // HF checkpoint; empty: the synthetic preset below
  std::string synthetic = "default";
  uint64_t seed = 0;
  int batches = 200;
  int clients = 4;                    // threads calling forward at once
  int tokens = 64;                    // rows per batch
  std::string wire_dtype = "bf16";
  double skew = 4.0;                  // weight of the hot expert's router row in each token
  double zipf = 1.2;                  // exponent of the hot-expert draw
  double max_relative_error = 2e-2;   // per-row relative L2 error allowed against LocalEngine
  int worker_threads = 0;             // CPU threads per worker (0: cores / workers)
  int ready_timeout_s = 180;
  std::string bin_dir;                // empty: the folder of the moectl binary
  std::string log_dir;                // daemons' stderr; empty: a fresh folder under /tmp
  uint16_t metrics_port = 0;          // the client's /metrics on metrics_host (moe_client_*); 0: off
  std::string metrics_host = "127.0.0.1";
  TransportOptions transport;         // --tls*: the client's TLS, and the started cluster's
};

int run_demo(const DemoOptions& options, std::ostream& out);

}  // namespace moe::cli
