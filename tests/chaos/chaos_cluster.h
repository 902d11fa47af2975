// ChaosCluster: the real daemons of one chaos run (moe-coordinator and moe-worker from MOE_BIN_DIR), on
// 127.0.0.1 or one network namespace per node (NetTopology: nodes "client", "coord", "w0".."wN"), with
// the faults a schedule applies: kill -9 and restart of the coordinator (same address, with or without
// its state file) and of a worker (a new process on the worker's node), SIGSTOP/SIGCONT, a worker
// joining (a spare node), a worker leaving (moectl drain; it then exits 0). It remembers which processes
// should run, so that crashed() can name any that died without being killed. Built on the integration
// harness (DaemonProcess, ClusterStatus, bin_path, scratch_dir); TestCluster itself only knows loopback.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/chaos/net_namespaces.h"
#include "tests/integration/test_cluster.h"

namespace moe::chaos {

using integration::ClusterStatus;
using integration::DaemonProcess;

struct ChaosClusterOptions {
  std::string name;             // log folder name
  int workers = 3;              // started at once
  int spare_workers = 1;        // nodes kept for joins (netns)
  int replicas = 1;
  int slots = 0;                // --slots of every worker (0: their default)
  bool state_file = false;
  bool netns = false;
  std::string cluster_token;    // empty: none
  uint32_t heartbeat_ms = 100;
  uint32_t lease_ms = 600;
  uint32_t grace_ms = 300;
};

class ChaosCluster {
 public:
  // Creates the namespaces (netns), starts the coordinator and the workers. Throws std::runtime_error.
  explicit ChaosCluster(ChaosClusterOptions options);
  ~ChaosCluster();  // kills the daemons, deletes the namespaces; removes the logs unless keep_logs()
  ChaosCluster(const ChaosCluster&) = delete;
  ChaosCluster& operator=(const ChaosCluster&) = delete;

  const ChaosClusterOptions& options() const { return options_; }
  const std::string& coordinator_address() const { return coordinator_address_; }
  NetTopology* net() { return net_.get(); }
  const std::filesystem::path& dir() const { return dir_; }

  void start_coordinator();
  void kill_coordinator();   // SIGKILL + reap
  bool coordinator_expected() const { return coordinator_expected_; }

  size_t worker_count() const { return workers_.size(); }
  const std::string& worker_address(size_t i) const { return workers_.at(i).address; }
  std::string worker_node(size_t i) const { return "w" + std::to_string(i); }
  // True while worker i should be serving (started, not killed, stopped or drained).
  bool worker_live(size_t i) const { return workers_.at(i).state == State::kRunning; }
  bool worker_exists(size_t i) const { return workers_.at(i).process != nullptr; }
  size_t live_workers() const;

  size_t start_worker();            // a new worker on the next node; returns its index
  void restart_worker(size_t i);    // a new process for worker i (its node's address in netns)
  void kill_worker(size_t i);       // SIGKILL + reap
  void stop_worker(size_t i);       // SIGSTOP
  void continue_worker(size_t i);   // SIGCONT
  // `moectl drain` of worker i (bounded); the worker is then expected to exit 0. Returns moectl's
  // exit status text and output.
  std::string drain_worker(size_t i, std::chrono::milliseconds timeout);

  // Each daemon that should run but has exited, or left with a status other than exit 0.
  std::vector<std::string> crashed();

  std::optional<ClusterStatus> status(std::string* why = nullptr) const;
  // Epoch >= 1 with every live worker active; throws with the last status and the logs.
  ClusterStatus wait_ready(std::chrono::milliseconds timeout);
  std::string logs() const;
  void keep_logs() { keep_logs_ = true; }

 private:
  enum class State { kRunning, kKilled, kStopped, kLeaving };
  struct Worker {
    std::unique_ptr<DaemonProcess> process;
    std::string address;
    State state = State::kKilled;
    int incarnation = 0;
    std::string exit_note;  // set when it was found exited
  };
  std::vector<std::string> prefix(const std::string& node) const;
  void launch_worker(size_t i);
  // Remembers a crash of `process` when it should have been running and has exited.
  void note_if_crashed(DaemonProcess* process, bool expected, const std::string& who);

  ChaosClusterOptions options_;
  std::filesystem::path dir_;
  std::unique_ptr<NetTopology> net_;
  std::string coordinator_address_;
  std::unique_ptr<DaemonProcess> coordinator_;
  int coordinator_incarnation_ = 0;
  bool coordinator_expected_ = false;
  std::vector<Worker> workers_;
  std::vector<std::string> exited_;
  bool keep_logs_ = false;  // crashes already seen (of replaced processes)
};

}  // namespace moe::chaos
