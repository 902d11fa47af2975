// LocalCluster: a whole cluster of real daemons on 127.0.0.1 for the demo, the cluster benchmark and
// tests: one moe-coordinator on a free port and N moe-worker processes (listening on free ports they
// pick), started from a folder of binaries, stopped with SIGTERM (SIGKILL after a grace period) when it
// goes away. Children die with the thread that started them (PR_SET_PDEATHSIG).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/client/local_cluster_process.h"
#include "runtime/net/tls_context.h"

namespace moe {

struct LocalClusterOptions {
  std::string bin_dir;             // holds moe-coordinator and moe-worker
  int workers = 3;
  std::string model;               // "hf:DIR" or "synthetic:NAME:SEED"
  std::string log_dir;             // children's stdout and stderr go to <log_dir>/<name>.log; empty: inherited
  uint32_t heartbeat_ms = 200;
  uint32_t lease_ms = 1500;
  uint32_t grace_ms = 500;
  int worker_threads = 0;          // --threads of each worker's CPU backend (0: their default)
  int replicas = 1;                // copies of every expert
  int min_workers = -1;            // workers the first placement waits for; < 0: all `workers`
  std::vector<std::string> coordinator_args;  // extra flags
  std::vector<std::string> worker_args;
  // Mutual TLS between every daemon (and wait_ready's queries) when all three files are set. Without TLS
  // the daemons get --allow-cleartext-token (the cluster is on loopback), so an inherited
  // MOE_CLUSTER_TOKEN still starts them.
  TlsFiles tls;
  // The token the daemons were given in coordinator_args / worker_args, for wait_ready's queries; empty:
  // MOE_CLUSTER_TOKEN of this process's environment (which they inherit).
  std::string cluster_token;
  bool tls_enabled() const { return !tls.cert.empty(); }
};

class LocalCluster {
 public:
  // Starts the coordinator and the workers. Throws std::runtime_error naming the path when a binary
  // is missing.
  explicit LocalCluster(LocalClusterOptions options);
  ~LocalCluster();  // stop()
  LocalCluster(const LocalCluster&) = delete;
  LocalCluster& operator=(const LocalCluster&) = delete;

  const std::string& coordinator_address() const { return coordinator_address_; }
  const LocalClusterOptions& options() const { return options_; }

  // Waits until the placement has epoch >= 1 with every started worker active. Throws
  // std::runtime_error after `timeout` (saying what it saw last) or as soon as a daemon exits.
  // Returns the epoch reached.
  // MOE_CLUSTER_TOKEN of this process's environment (which the daemons it starts inherit), or "".
  static std::string inherited_cluster_token();
  uint64_t wait_ready(std::chrono::milliseconds timeout);

  ChildProcess& coordinator() { return coordinator_; }
  // SIGKILL the coordinator and start it again on the same address with the same flags (its log is
  // appended to): with the state file it had, if coordinator_args named one.
  void restart_coordinator();
  ChildProcess& worker(size_t i) { return workers_.at(i); }
  size_t worker_count() const { return workers_.size(); }
  // Starts one more worker (same flags); returns its index.
  size_t add_worker();

  // SIGTERM every daemon, workers first, wait up to `grace` each, then SIGKILL. Idempotent.
  void stop(std::chrono::milliseconds grace = std::chrono::milliseconds(5000));

 private:
  std::string log_path(const std::string& name) const;
  void add_transport_flags(std::vector<std::string>& argv) const;

  LocalClusterOptions options_;
  std::string coordinator_address_;
  std::vector<std::string> coordinator_argv_;
  ChildProcess coordinator_;
  std::vector<ChildProcess> workers_;
};

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
uint16_t pick_free_port();

// The folder holding the running executable (where moectl finds the daemons).
std::string executable_dir();

}  // namespace moe
