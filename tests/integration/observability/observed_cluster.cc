// ObservedCluster: start, readiness through the coordinator's /metrics, the load loop, teardown.
#include "tests/integration/observability/observed_cluster.h"

#include <chrono>
#include <sstream>
#include <stdexcept>

#include "runtime/client/local_cluster.h"
#include "tests/integration/integration_util.h"
#include <fstream>

#include "tests/integration/observability/http_get.h"
#include "tests/integration/test_cluster.h"

namespace moe::integration {

double sample_value(const std::string& metrics_text, const std::string& metric) {
  std::istringstream lines(metrics_text);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(metric + " ", 0) == 0) return std::stod(line.substr(metric.size() + 1));
  }
  return -1;
}

ObservedCluster::ObservedCluster(const std::filesystem::path& dir) : dir_(dir) {
  std::ofstream(token_file()) << token_ << "\n";
  std::filesystem::permissions(token_file(), std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  const std::vector<std::string> token_flags{"--cluster-token-file", token_file().string(), "--allow-cleartext-token"};
  coordinator_address_ = "127.0.0.1:" + std::to_string(pick_free_port());
  coordinator_metrics_port_ = pick_free_port();
  std::vector<std::string> coordinator_argv{bin_path("moe-coordinator"), "--listen", coordinator_address_, "--synthetic",
                                            "tiny", "--seed", "0", "--metrics-port", std::to_string(coordinator_metrics_port_),
                                            "--heartbeat-ms", "100", "--lease-ms", "1000", "--grace-ms", "300",
                                            "--min-workers", "3"};
  coordinator_argv.insert(coordinator_argv.end(), token_flags.begin(), token_flags.end());
  coordinator_ = DaemonProcess(coordinator_argv, dir_ / "coordinator.log");
  for (int i = 0; i < 3; ++i) {
    worker_metrics_ports_.push_back(pick_free_port());
    std::vector<std::string> argv{bin_path("moe-worker"), "--coordinator", coordinator_address_,
                                  "--listen", "127.0.0.1:0", "--threads", "1", "--metrics-port",
                                  std::to_string(worker_metrics_ports_.back()), "--name", "obs-worker-" + std::to_string(i)};
    argv.insert(argv.end(), token_flags.begin(), token_flags.end());
    workers_.emplace_back(argv, dir_ / ("worker-" + std::to_string(i) + ".log"));
  }
  wait_ready();
  client_metrics_ = std::make_unique<MetricsEndpoint>("127.0.0.1", pick_free_port(), "client", "none");
  ClusterClientOptions options;
  options.registry = &client_metrics_->registry();
  options.cluster_token = token_;
  client_ = std::make_unique<ClusterClient>(coordinator_address_, options);
  load_ = std::thread([this] { drive_load(); });
}

ObservedCluster::~ObservedCluster() {
  stop_ = true;
  if (load_.joinable()) load_.join();
  client_.reset();
  for (auto& worker : workers_) worker.kill_now();
  coordinator_.kill_now();
}

void ObservedCluster::wait_ready() {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  std::string last = "nothing yet";
  while (std::chrono::steady_clock::now() < deadline) {
    if (!coordinator_.running()) throw std::runtime_error("moe-coordinator exited (" + coordinator_.exit_status() + ")\n" + logs());
    for (auto& worker : workers_) {
      if (!worker.running()) throw std::runtime_error("a moe-worker exited (" + worker.exit_status() + ")\n" + logs());
    }
    try {
      const auto reply = http_get("127.0.0.1", coordinator_metrics_port_, "/metrics", std::chrono::milliseconds(3000), token_);
      const double active = sample_value(reply.body, "moe_coordinator_workers{state=\"active\"}");
      const double epoch = sample_value(reply.body, "moe_placement_epoch");
      if (active == 3 && epoch >= 1) return;
      last = "active workers " + std::to_string(active) + ", epoch " + std::to_string(epoch);
    } catch (const std::exception& e) {
      last = e.what();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  throw std::runtime_error("cluster not ready within 30 s (last seen: " + last + ")\n" + logs());
}

void ObservedCluster::drive_load() {
  const auto& layers = client_->spec().moe_layers;
  const int64_t hidden = client_->spec().hidden_size;
  for (uint32_t i = 0; !stop_; ++i) {
    try {
      client_->forward(layers[i % layers.size()], random_input(1 + (i * 7) % 32, hidden, i));
      ++calls_ok_;
    } catch (const std::exception&) {
      ++calls_failed_;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
}

std::string ObservedCluster::logs() const {
  std::string out = "--- " + coordinator_.command_line() + "\n" + coordinator_.log_tail(15);
  for (const auto& worker : workers_) out += "--- " + worker.command_line() + "\n" + worker.log_tail(15);
  return out;
}

}  // namespace moe::integration
