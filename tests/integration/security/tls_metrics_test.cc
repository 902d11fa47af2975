// /metrics of daemons started with mutual TLS and a cluster token (issue 12): a real Prometheus
// (Debian `prometheus`) scrapes the coordinator and a worker over HTTPS with a client certificate from
// the cluster CA and the token from a file (`authorization: credentials_file`), as ops/prometheus does
// for compose, and its `up` is 1 for both with their series stored. Another Prometheus job that scrapes
// the same ports over plain HTTP gets nothing (`up` 0). A worker of the same cluster started with
// --metrics-open serves plain HTTP without the token.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <thread>

#include "runtime/client/local_cluster.h"
#include "tests/integration/integration_util.h"
#include "tests/integration/observability/http_get.h"

namespace moe::integration {
namespace {

using Clock = std::chrono::steady_clock;
const char* kPrometheus = "/usr/bin/prometheus";

class TlsMetrics : public ClusterTest {};

// instance -> value of an instant query's vector result.
std::map<std::string, double> query(uint16_t port, const std::string& expression) {
  std::map<std::string, double> out;
  const auto reply = http_get("127.0.0.1", port, "/api/v1/query?query=" + url_encode(expression));
  if (reply.status != 200) return out;
  const auto body = nlohmann::json::parse(reply.body);  // kept: the loop walks into it
  for (const auto& series : body.at("data").at("result")) {
    const auto& metric = series.at("metric");
    const std::string key = metric.value("job", "") + "@" + metric.value("instance", "");
    out[key] = std::stod(series.at("value").at(1).get<std::string>());
  }
  return out;
}

TEST_F(TlsMetrics, PrometheusScrapesTheDaemonsOverHttpsWithTheToken) {
  ASSERT_TRUE(std::filesystem::exists(kPrometheus)) << kPrometheus << " is missing: install the Debian package `prometheus`";
  const uint16_t coordinator_port = pick_free_port(), worker_port = pick_free_port();
  TestClusterOptions options;
  options.model_flags = tiny_model_flags();
  options.workers = 1;
  options.tls = true;
  options.cluster_token = "tls-metrics-token";
  options.coordinator_flags = {"--metrics-port", std::to_string(coordinator_port)};
  options.worker_flags = {"--metrics-port", std::to_string(worker_port)};
  TestCluster& cluster = start_cluster(options);
  cluster.wait_ready();

  const TlsFiles client = test_tls_files("client");
  const std::string tls = "    scheme: https\n    tls_config:\n      ca_file: " + client.ca + "\n      cert_file: " +
                          client.cert + "\n      key_file: " + client.key + "\n";
  const std::string authorization =
      "    authorization:\n      type: Bearer\n      credentials_file: " + cluster.token_file().string() + "\n";
  const std::string targets = "    static_configs:\n      - targets: [\"127.0.0.1:" + std::to_string(coordinator_port) +
                              "\", \"127.0.0.1:" + std::to_string(worker_port) + "\"]\n";
  const auto dir = cluster.dir() / "prometheus";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "prometheus.yml") << "global:\n  scrape_interval: 1s\nscrape_configs:\n"
                                        << "  - job_name: https\n" << tls << authorization << targets
                                        << "  - job_name: plain\n" << authorization << targets;
  const uint16_t prometheus_port = pick_free_port();
  DaemonProcess prometheus({kPrometheus, "--config.file=" + (dir / "prometheus.yml").string(),
                            "--storage.tsdb.path=" + (dir / "tsdb").string(),
                            "--web.listen-address=127.0.0.1:" + std::to_string(prometheus_port)},
                           dir / "prometheus.log");

  // Until both https targets are up and both plain ones have been tried (bounded by 40 s).
  const std::string coordinator = "127.0.0.1:" + std::to_string(coordinator_port);
  const std::string worker = "127.0.0.1:" + std::to_string(worker_port);
  std::map<std::string, double> up;
  std::string last_error;
  const auto by = Clock::now() + 40s;
  while (Clock::now() < by) {
    ASSERT_TRUE(prometheus.running()) << "prometheus exited (" << prometheus.exit_status() << ")\n" << prometheus.log_tail();
    try {
      up = query(prometheus_port, "up");
    } catch (const std::exception& e) {  // not listening yet
      last_error = e.what();
    }
    if (up["https@" + coordinator] == 1 && up["https@" + worker] == 1 && up.count("plain@" + coordinator) &&
        up.count("plain@" + worker))
      break;
    std::this_thread::sleep_for(300ms);
  }
  std::string targets_state = "last error: " + last_error + "; up: ";
  for (const auto& [k, v] : up) targets_state += k + "=" + std::to_string(v) + " ";
  try {
    targets_state += http_get("127.0.0.1", prometheus_port, "/api/v1/targets").body;
  } catch (const std::exception& e) {
    targets_state += e.what();
  }
  EXPECT_EQ(up["https@" + coordinator], 1) << "coordinator over https; targets: " << targets_state;
  EXPECT_EQ(up["https@" + worker], 1) << "worker over https; targets: " << targets_state;
  ASSERT_TRUE(up.count("plain@" + coordinator) && up.count("plain@" + worker)) << targets_state;
  EXPECT_EQ(up["plain@" + coordinator], 0) << "the coordinator's /metrics answered plain HTTP";
  EXPECT_EQ(up["plain@" + worker], 0) << "the worker's /metrics answered plain HTTP";
  // The series themselves came through.
  EXPECT_GE(query(prometheus_port, "moe_worker_epoch")["https@" + worker], 1);
  EXPECT_GE(query(prometheus_port, "moe_placement_epoch")["https@" + coordinator], 1);
  prometheus.kill(SIGTERM);
  if (!prometheus.wait_exit(10s)) prometheus.kill_now();

  // --metrics-open: plain HTTP, no token, on a worker that otherwise speaks TLS with the token.
  const uint16_t open_port = pick_free_port();
  const TlsFiles worker_tls = test_tls_files("worker");
  DaemonProcess open_worker({bin_path("moe-worker"), "--coordinator", cluster.coordinator_address(), "--listen",
                             "127.0.0.1:0", "--threads", "1", "--tls", "on", "--tls-cert", worker_tls.cert, "--tls-key",
                             worker_tls.key, "--tls-ca", worker_tls.ca, "--cluster-token-file",
                             cluster.token_file().string(), "--metrics-port", std::to_string(open_port),
                             "--metrics-open"},
                            cluster.dir() / "moe-worker-open.log");
  open_worker.wait_for_log_line("moe-worker listening on", 20s);
  const HttpReply open = http_get("127.0.0.1", open_port, "/metrics");
  EXPECT_EQ(open.status, 200u) << open.body;
  EXPECT_NE(open.body.find("moe_build_info{"), std::string::npos);
  open_worker.kill(SIGTERM);
  if (!open_worker.wait_exit(10s)) open_worker.kill_now();
}

}  // namespace
}  // namespace moe::integration
