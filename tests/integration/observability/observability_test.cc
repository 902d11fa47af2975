// Observability end to end, on real components: `promtool check metrics` (Debian `prometheus` package)
// finds no problem in the /metrics of a running moe-coordinator, moe-worker, in-process cluster client
// and `moectl demo --metrics-port`; and a real Prometheus server scraping a loopback cluster under load
// every second answers every PromQL expression of ops/grafana/dashboards/moe-cluster.json with at least
// one series holding a number (not NaN), through its HTTP API.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <csignal>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "runtime/client/local_cluster.h"
#include "tests/integration/daemon_process.h"
#include "tests/integration/observability/http_get.h"
#include "tests/integration/observability/observed_cluster.h"
#include "tests/integration/test_cluster.h"

namespace moe::integration {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

const char* kPromtool = "/usr/bin/promtool";
const char* kPrometheus = "/usr/bin/prometheus";

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// promtool's verdict on one /metrics body: empty when it finds no problem, else its output.
std::string promtool_problems(const std::string& metrics_text, const std::filesystem::path& dir, const std::string& name) {
  const auto input = dir / (name + ".metrics.txt");
  const auto log = dir / (name + ".promtool.log");
  std::ofstream(input) << metrics_text;
  const std::string status =
      run_to_completion({"/bin/sh", "-c", std::string(kPromtool) + " check metrics < '" + input.string() + "'"}, log, 20s);
  const std::string output = read_file(log);
  if (status == "exit 0" && output.find_first_not_of(" \n") == std::string::npos) return "";
  return "promtool " + status + " on " + name + ":\n" + output;
}

std::string fetch_metrics(uint16_t port, const std::string& token = "") {
  const auto reply = http_get("127.0.0.1", port, "/metrics", 3000ms, token);
  if (reply.status != 200) throw std::runtime_error("/metrics on port " + std::to_string(port) + " answered " + std::to_string(reply.status));
  return reply.body;
}

std::vector<std::string> dashboard_expressions() {
  const auto path = std::filesystem::path(MOE_SOURCE_DIR) / "ops/grafana/dashboards/moe-cluster.json";
  const auto dashboard = nlohmann::json::parse(read_file(path));
  std::vector<std::string> expressions;
  for (const auto& panel : dashboard.at("panels")) {
    for (const auto& target : panel.at("targets")) expressions.push_back(target.at("expr").get<std::string>());
  }
  return expressions;
}

void expect_tools_installed() {
  for (const char* tool : {kPromtool, kPrometheus}) {
    ASSERT_TRUE(std::filesystem::exists(tool)) << tool << " is missing: install the Debian package `prometheus` (ops/install-deps.sh)";
  }
}

TEST(Observability, DaemonAndClientMetricsPassPromtoolAndEveryDashboardQueryReturnsData) {
  expect_tools_installed();
  const auto dir = scratch_dir("observability_prometheus");
  ObservedCluster cluster(dir);

  // Wait for load to reach every worker, so each family has its labelled series.
  const auto loaded_by = Clock::now() + 20s;
  while (cluster.calls_ok() < 20 && Clock::now() < loaded_by) std::this_thread::sleep_for(50ms);
  ASSERT_GE(cluster.calls_ok(), 20u) << "the load thread made " << cluster.calls_ok() << " good calls and "
                                     << cluster.calls_failed() << " failed ones\n" << cluster.logs();

  std::vector<std::pair<std::string, uint16_t>> targets{{"coordinator", cluster.coordinator_metrics_port()},
                                                         {"client", cluster.client_metrics_port()}};
  for (size_t i = 0; i < cluster.worker_metrics_ports().size(); ++i)
    targets.emplace_back("worker-" + std::to_string(i), cluster.worker_metrics_ports()[i]);
  // The daemons' /metrics need the cluster token (issue 12): 401 without it, or with another one.
  for (const auto& [name, port] : targets) {
    if (name == "client") continue;  // the in-process client's endpoint is not guarded
    EXPECT_EQ(http_get("127.0.0.1", port, "/metrics").status, 401u) << name << " served /metrics without the token";
    EXPECT_EQ(http_get("127.0.0.1", port, "/metrics", 3000ms, "not-the-token").status, 401u) << name;
  }
  for (const auto& [name, port] : targets) {
    const std::string text = fetch_metrics(port, cluster.token());
    EXPECT_NE(text.find("moe_build_info{"), std::string::npos) << name << " has no moe_build_info";
    EXPECT_EQ(promtool_problems(text, dir, name), "");
  }

  // A real Prometheus scraping every process each second, on a free loopback port, storage in the scratch dir.
  auto list = [](const std::vector<uint16_t>& ports) {
    std::string out;
    for (uint16_t p : ports) out += std::string(out.empty() ? "" : ", ") + "\"127.0.0.1:" + std::to_string(p) + "\"";
    return "[" + out + "]";
  };
  // As ops/prometheus/prometheus.yml: the daemons' jobs send the token from a file.
  const std::string authorization = "    authorization:\n      type: Bearer\n      credentials_file: " +
                                    cluster.token_file().string() + "\n";
  const auto config = dir / "prometheus.yml";
  std::ofstream(config) << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n"
                        << "  - job_name: moe-coordinator\n" << authorization << "    static_configs:\n      - targets: "
                        << list({cluster.coordinator_metrics_port()}) << "\n"
                        << "  - job_name: moe-worker\n" << authorization << "    static_configs:\n      - targets: "
                        << list(cluster.worker_metrics_ports()) << "\n"
                        << "  - job_name: moe-client\n    static_configs:\n      - targets: "
                        << list({cluster.client_metrics_port()}) << "\n";
  const uint16_t prometheus_port = pick_free_port();
  DaemonProcess prometheus({kPrometheus, "--config.file=" + config.string(), "--storage.tsdb.path=" + (dir / "tsdb").string(),
                            "--web.listen-address=127.0.0.1:" + std::to_string(prometheus_port)},
                           dir / "prometheus.log");
  const auto ready_by = Clock::now() + 20s;
  for (;;) {
    ASSERT_TRUE(prometheus.running()) << "prometheus exited (" << prometheus.exit_status() << ")\n" << prometheus.log_tail();
    try {
      if (http_get("127.0.0.1", prometheus_port, "/-/ready").status == 200) break;
    } catch (const std::exception&) {
    }
    ASSERT_LT(Clock::now(), ready_by) << "prometheus not ready within 20 s\n" << prometheus.log_tail();
    std::this_thread::sleep_for(200ms);
  }

  // Every expression must answer with a number; rates need two scrapes, so poll until a shared deadline.
  const auto expressions = dashboard_expressions();
  ASSERT_GE(expressions.size(), 20u);
  std::set<std::string> waiting(expressions.begin(), expressions.end());
  std::map<std::string, std::string> last_answer;
  const auto answered_by = Clock::now() + 40s;
  while (!waiting.empty() && Clock::now() < answered_by) {
    for (auto it = waiting.begin(); it != waiting.end();) {
      const auto reply = http_get("127.0.0.1", prometheus_port, "/api/v1/query?query=" + url_encode(*it));
      last_answer[*it] = reply.body;
      bool has_number = false;
      if (reply.status == 200) {
        const auto body = nlohmann::json::parse(reply.body);
        for (const auto& series : body.at("data").at("result")) {
          const std::string value = series.at("value").at(1).get<std::string>();
          has_number |= !std::isnan(std::stod(value));
        }
      }
      it = has_number ? waiting.erase(it) : std::next(it);
    }
    if (!waiting.empty()) std::this_thread::sleep_for(500ms);
  }
  for (const auto& expression : waiting) {
    ADD_FAILURE() << "no series with a number for the dashboard query\n  " << expression << "\nlast answer: "
                  << last_answer[expression];
  }
  EXPECT_EQ(cluster.calls_failed(), 0u) << cluster.logs();
}

TEST(Observability, DemoClientMetricsPassPromtool) {
  expect_tools_installed();
  const auto dir = scratch_dir("observability_demo");
  const uint16_t port = pick_free_port();
  DaemonProcess demo({bin_path("moectl"), "demo", "--workers", "2", "--synthetic", "tiny", "--batches", "1000000",
                      "--worker-threads", "1", "--clients", "2", "--log-dir", (dir / "daemons").string(),
                      "--metrics-port", std::to_string(port)},
                     dir / "demo.log");
  demo.wait_for_log_line("client metrics on http://127.0.0.1:" + std::to_string(port) + "/metrics", 60s);
  std::string text;
  const auto deadline = Clock::now() + 30s;
  while (Clock::now() < deadline) {
    text = fetch_metrics(port);
    if (sample_value(text, "moe_client_forward_calls_total{outcome=\"ok\"}") > 0) break;
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_GT(sample_value(text, "moe_client_forward_calls_total{outcome=\"ok\"}"), 0) << demo.log_tail();
  EXPECT_NE(text.find("moe_client_forward_latency_seconds_bucket"), std::string::npos);
  EXPECT_NE(text.find("component=\"client\""), std::string::npos);
  EXPECT_EQ(promtool_problems(text, dir, "demo-client"), "");
  demo.kill(SIGTERM);
  if (!demo.wait_exit(10s)) demo.kill_now();
}

}  // namespace
}  // namespace moe::integration
