// `moectl bench faults [--seconds N]`: the fault types one after another, each on a fresh loopback
// cluster (LocalCluster) under checked load (CheckedLoad: client threads, a per-call deadline, every
// output compared with LocalEngine's): worker kill -9 with replicas 2 and with replicas 1, worker
// SIGSTOP past its lease, coordinator kill -9 + restart with and without its state file, a worker
// joining, a drain. Per fault type: calls, calls failed (% of calls), the longest interruption (the
// longest stretch with no call ending right), the time from the fault to full service (the end of the
// last call that failed or was slow), wrong answers. Then the targets, met or missed:
//   replicas >= 2: zero failed calls for a worker loss;
//   no replicas: full service within 2 s of the lease expiring (kill -9 and SIGSTOP);
//   zero failed calls across a coordinator restart (clients that already hold a placement);
//   zero wrong answers always.
#pragma once

#include <ostream>
#include <string>

namespace moe {

struct BenchFaultsOptions {
  double seconds = 5;            // load after each fault is over (figures cover the fault and this)
  int workers = 3;
  int threads = 2;               // client threads
  int deadline_ms = 1000;        // per forward call
  int heartbeat_ms = 200;
  int lease_ms = 1000;
  int grace_ms = 300;
  std::string synthetic = "tiny";
  std::string only;              // run only the fault types whose name contains this
  std::string bin_dir;           // empty: the folder of the running binary
};

// Runs every fault type, prints the table and the targets. Returns 0 when every target was met, 1 when
// one was missed; throws when a cluster cannot start.
int run_bench_faults(const BenchFaultsOptions& options, std::ostream& out);

}  // namespace moe
