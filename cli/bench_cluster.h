// `moectl bench cluster`: a loopback cluster (1 moe-coordinator, W moe-worker processes) against
// LocalEngine in the same run. For each T: ms per forward of both, the latency the cluster adds, and the
// token bytes it moves per second beside the plain-socket loopback ceiling (runtime/net/loopback_ceiling.h)
// measured in the same run with the same payload bytes; plus the T=1 latency on a model with a trivial
// expert size. Targets printed beside: bytes moved >= 50% of the ceiling and added latency <= 20% of
// LocalEngine at T >= 256; added latency < 300 us at T=1 with the trivial model. With --tls, the same
// figures again on a cluster with mutual TLS on every connection, printed beside the cleartext rows of
// this run (one row each per T). With --transport ucx the forward path runs over UCX (shared memory on
// this host) and its target is 2x the TCP ceiling measured in the same run.
#pragma once

#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "runtime/net/tls_context.h"

namespace moe {

struct BenchClusterOptions {
  int workers = 2;
  std::string synthetic = "default";   // model of the main figures
  std::string trivial = "tiny";        // model with a trivial expert size, for the T=1 latency
  std::vector<int64_t> tokens{1, 16, 256, 1024};
  double min_seconds = 1.0;            // time per figure (at least min_reps calls)
  int min_reps = 5;
  int max_reps = 2000;
  std::string wire_dtype = "bf16";
  std::string cluster_token;           // the started workers inherit MOE_CLUSTER_TOKEN; the client sends it
  std::string bin_dir;                 // empty: the folder of the running binary
  uint64_t seed = 1;
  int ready_timeout_s = 300;
  bool tls = false;                    // also measure with mutual TLS
  TlsFiles tls_files;                  // empty: a development set made for the run (runtime/net/dev_certs.h)
  std::string transport = "tcp";       // forward requests over tcp or ucx (workers run --transport ucx); the
                                       // ceiling is the plain TCP socket's either way
  bool deterministic = false;          // instead: default vs --deterministic clusters (bench_determinism.h)
  int pairs = 3;                       // --deterministic: ABAB pairs per T
};

// Runs the benchmark and prints the table to `out`. Returns 0; throws when the cluster cannot start.
int run_bench_cluster(const BenchClusterOptions& options, std::ostream& out);

// The median of timed calls and how many there were.
struct Timing {
  double median_ms = 0;
  int reps = 0;
};

// One warm-up call, then calls until o.min_seconds have passed (o.min_reps .. o.max_reps); median ms per call.
Timing time_calls(const BenchClusterOptions& o, const std::function<void()>& call);

}  // namespace moe
