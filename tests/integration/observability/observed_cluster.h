// ObservedCluster: a real moe-coordinator and three moe-workers from MOE_BIN_DIR on 127.0.0.1, each
// with its own --metrics-port, plus an in-process ClusterClient that serves its moe_client_* series on
// a /metrics port of its own and keeps forwarding batches from a thread until destroyed: a loopback
// cluster under load, as Prometheus would see one in production.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "runtime/client/cluster_client.h"
#include "runtime/metrics/metrics_endpoint.h"
#include "tests/integration/daemon_process.h"

namespace moe::integration {

class ObservedCluster {
 public:
  // Starts the daemons (synthetic "tiny" model) with a cluster token (DIR/cluster-token, so their /metrics
  // need it), waits until the coordinator's own /metrics shows three active workers and an epoch >= 1,
  // then starts the client and its load thread.
  explicit ObservedCluster(const std::filesystem::path& dir);
  ~ObservedCluster();

  uint16_t coordinator_metrics_port() const { return coordinator_metrics_port_; }
  const std::vector<uint16_t>& worker_metrics_ports() const { return worker_metrics_ports_; }
  uint16_t client_metrics_port() const { return client_metrics_->port(); }
  uint64_t calls_ok() const { return calls_ok_; }
  uint64_t calls_failed() const { return calls_failed_; }
  std::string logs() const;  // last lines of every daemon's log
  const std::string& token() const { return token_; }
  std::filesystem::path token_file() const { return dir_ / "cluster-token"; }

 private:
  void wait_ready();
  void drive_load();

  std::filesystem::path dir_;
  std::string coordinator_address_;
  std::string token_ = "observability-token";
  uint16_t coordinator_metrics_port_ = 0;
  std::vector<uint16_t> worker_metrics_ports_;
  DaemonProcess coordinator_;
  std::vector<DaemonProcess> workers_;
  std::unique_ptr<MetricsEndpoint> client_metrics_;
  std::unique_ptr<ClusterClient> client_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> calls_ok_{0}, calls_failed_{0};
  std::thread load_;
};

// The value of the first sample line of `metric` (name plus exact label text, e.g.
// `moe_coordinator_workers{state="active"}`) in a /metrics body, or -1 when absent.
double sample_value(const std::string& metrics_text, const std::string& metric);

}  // namespace moe::integration
