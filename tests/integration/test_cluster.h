// TestCluster: a real moe-coordinator and moe-workers from MOE_BIN_DIR on 127.0.0.1, started the way an
// operator starts them (flags only), with short heartbeat / lease / grace so failures play out in well
// under a second. The coordinator keeps one port and state file across restarts; each worker's address
// comes from its "moe-worker listening on HOST:PORT" line. Every process's output goes to its own log in
// dir(); every wait is bounded and its timeout message carries the logs' last lines. The destructor
// SIGKILLs whatever still runs.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "runtime/client/client_placement.h"
#include "runtime/net/tls_context.h"
#include "runtime/placement/placement_wire.h"
#include "runtime/wire/moe.capnp.h"
#include "tests/integration/daemon_process.h"

namespace moe::integration {

using namespace std::chrono_literals;

struct TestClusterOptions {
  std::vector<std::string> model_flags;  // {"--model", DIR} or {"--synthetic", "tiny", "--seed", "0"}
  int workers = 3;
  int replicas = 1;
  uint32_t heartbeat_ms = 100;
  uint32_t lease_ms = 600;
  uint32_t grace_ms = 300;
  bool state_file = false;                // --state-file DIR/coordinator-state.json
  std::vector<std::string> worker_flags;  // extra flags of every worker
  std::vector<std::string> coordinator_flags;  // extra flags of the coordinator
  // Not empty: written to DIR/cluster-token (0600) and given to every daemon as --cluster-token-file;
  // placement() and status() send it.
  std::string cluster_token;
  // Mutual TLS on every connection, with the build's test certificates (MOE_TEST_CERTS_DIR): the
  // coordinator and workers get their own, the harness's queries and client_tls() the client's. Without
  // it every daemon gets --allow-cleartext-token (so tests may give tokens on loopback).
  bool tls = false;
};

// Certificate, key and CA of `name` (coordinator, worker, client) from the build's test certificates.
TlsFiles test_tls_files(const std::string& name);
// The same, from another CA (only `client` exists there).
TlsFiles other_ca_tls_files(const std::string& name);

// One worker as the coordinator's status reply shows it.
struct StatusWorker {
  uint32_t id = 0;
  std::string address;
  wire::WorkerState state = wire::WorkerState::JOINING;
  size_t hosted = 0;
};

struct ClusterStatus {
  uint64_t epoch = 0;
  std::vector<StatusWorker> workers;
  const StatusWorker* find(const std::string& address) const;
};

using ::moe::worker_state_name;

// The status reply as the tests read it.
ClusterStatus status_from_reply(wire::StatusReply::Reader reply);

class TestCluster {
 public:
  // Starts the coordinator and options.workers workers (waiting only for their listen lines).
  // `name` names the log folder.
  TestCluster(const std::string& name, TestClusterOptions options);
  ~TestCluster();
  TestCluster(const TestCluster&) = delete;
  TestCluster& operator=(const TestCluster&) = delete;

  const std::string& coordinator_address() const { return coordinator_address_; }
  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path state_file() const { return dir_ / "coordinator-state.json"; }
  std::filesystem::path token_file() const { return dir_ / "cluster-token"; }
  const std::string& cluster_token() const { return options_.cluster_token; }

  DaemonProcess& coordinator() { return coordinator_; }
  // (Re)starts the coordinator on the same address and state file; its log is appended to.
  void start_coordinator();
  // SIGKILL the coordinator and reap it.
  void kill_coordinator();

  // Starts one more worker and waits for its listen line; returns its index.
  size_t start_worker();
  DaemonProcess& worker(size_t i) { return workers_.at(i); }
  const std::string& worker_address(size_t i) const { return worker_addresses_.at(i); }
  size_t worker_count() const { return workers_.size(); }
  // SIGKILL worker i (waits do not count it as a daemon that should run any more).
  void kill_worker(size_t i);
  // Starts worker i again (SIGKILLing it first when it still runs) with the same name and address, and
  // waits for its listen line: a restarted process on the same node. It gets a log of its own.
  void restart_worker(size_t i);

  // One getPlacement / status round trip; nullopt (reason in `why`) when the coordinator does not answer.
  std::optional<ClientPlacement> placement(std::string* why = nullptr) const;
  std::optional<ClusterStatus> status(std::string* why = nullptr) const;

  // Polls getPlacement until `ready` holds; throws std::runtime_error after `timeout` with `what`, the last
  // thing seen and the logs. Also throws at once when a daemon that should run has exited.
  ClientPlacement wait_for_placement(const std::string& what, const std::function<bool(const ClientPlacement&)>& ready,
                                     std::chrono::milliseconds timeout);
  ClusterStatus wait_for_status(const std::string& what, const std::function<bool(const ClusterStatus&)>& ready,
                                std::chrono::milliseconds timeout);
  // Epoch >= 1 with every running worker active and holding experts. Returns the placement.
  ClientPlacement wait_ready(std::chrono::milliseconds timeout = 20s);

  // The id the coordinator gave the worker at `address` in `placement`; throws when it is not listed.
  static uint32_t worker_id(const ClientPlacement& placement, const std::string& address);

  // Last lines of every process's log, for failure messages.
  std::string logs() const;

  // The TLS a client of this cluster needs (the client certificate), nullptr without TLS.
  std::shared_ptr<TlsContext> client_tls() const { return client_tls_; }

 private:
  void check_daemons_alive();
  void add_transport_flags(std::vector<std::string>& argv, const std::string& name) const;
  template <typename T>
  T poll_until(const std::string& what, const char* noun, const std::function<std::optional<T>(std::string*)>& fetch,
               const std::function<bool(const T&)>& ready, std::chrono::milliseconds timeout);

  TestClusterOptions options_;
  std::filesystem::path dir_;
  std::string coordinator_address_;
  DaemonProcess coordinator_;
  std::vector<DaemonProcess> workers_;
  std::vector<std::string> worker_addresses_;
  std::shared_ptr<TlsContext> client_tls_;
  bool coordinator_expected_ = false;
  std::vector<bool> worker_expected_;
  int restarts_ = 0;
};

// Folder of the binaries and a per-test scratch folder (removed first when it exists).
std::string bin_path(const std::string& name);
std::filesystem::path scratch_dir(const std::string& name);

}  // namespace moe::integration
