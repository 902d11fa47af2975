// ClusterClient against real daemons: a LocalCluster of moe-coordinator + moe-worker processes from
// MOE_BIN_DIR on 127.0.0.1. A missing binary fails the test (it is never skipped). Checks parity with
// LocalEngine, concurrent callers, and that a call survives a worker killed with SIGKILL (its experts
// move to the survivor after the lease; the client retries within its deadline).
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <future>

#include "runtime/client/cluster_client.h"
#include "runtime/client/local_cluster.h"
#include "runtime/model/synthetic_model.h"
#include "tests/unit/client/client_test_util.h"

namespace moe::test {
namespace {

using namespace std::chrono_literals;

LocalClusterOptions tiny_cluster(int workers) {
  LocalClusterOptions o;
  o.bin_dir = MOE_BIN_DIR;
  o.workers = workers;
  o.model = "synthetic:tiny:0";
  o.heartbeat_ms = 100;
  o.lease_ms = 800;
  o.grace_ms = 200;
  o.worker_threads = 1;
  o.log_dir = (std::filesystem::temp_directory_path() / ("moe-client-test-" + std::to_string(getpid()))).string();
  return o;
}

void require_binaries() {
  for (const char* name : {"moe-coordinator", "moe-worker"}) {
    const auto path = std::filesystem::path(MOE_BIN_DIR) / name;
    ASSERT_TRUE(std::filesystem::exists(path)) << name << " is missing at " << path
                                               << ": build it (ninja " << name << ") before running test_client";
  }
}

TEST(ClusterClientProcesses, MatchesLocalEngineOnARealCluster) {
  require_binaries();
  LocalCluster cluster(tiny_cluster(2));
  ASSERT_GE(cluster.wait_ready(15s), 1u);
  ClusterClientOptions options;
  options.wire_dtype = wire::DType::F32;
  ClusterClient client(cluster.coordinator_address(), options);
  auto source = SyntheticLayerSource::from_preset("tiny");
  auto reference = local_engine(*source);
  std::vector<std::future<double>> results;
  for (int thread = 0; thread < 3; ++thread) {
    results.push_back(std::async(std::launch::async, [&, thread] {
      double worst = 0;
      for (int i = 0; i < 6; ++i) {
        const int32_t layer = (thread + i) % 2;
        Matrix x = random_input(1 + 20 * i, client.spec().hidden_size, 1000 * thread + i);
        worst = std::max(worst, max_row_relative_error(client.forward(layer, x), reference->forward(layer, x)));
      }
      return worst;
    }));
  }
  for (auto& r : results) EXPECT_LT(r.get(), 1e-5);
  ClientStats stats = client.stats();
  EXPECT_EQ(stats.calls_ok, 18u);
  EXPECT_EQ(stats.tokens_per_worker.size(), 2u) << "both workers should have computed tokens";
}

TEST(ClusterClientProcesses, SurvivesAWorkerKilledMidStream) {
  require_binaries();
  LocalCluster cluster(tiny_cluster(2));
  ASSERT_GE(cluster.wait_ready(15s), 1u);
  ClusterClientOptions options;
  options.deadline = 10s;
  options.request_timeout = 1s;
  ClusterClient client(cluster.coordinator_address(), options);
  auto source = SyntheticLayerSource::from_preset("tiny");
  auto reference = local_engine(*source);
  Matrix x = random_input(64, client.spec().hidden_size, 77);
  Matrix want = reference->forward(0, x);
  EXPECT_LT(max_row_relative_error(client.forward(0, x), want), 2e-2);
  const uint64_t epoch_before = client.placement()->epoch();

  cluster.worker(1).signal(SIGKILL);
  for (int i = 0; i < 3; ++i) EXPECT_LT(max_row_relative_error(client.forward(0, x), want), 2e-2) << "call " << i;
  EXPECT_GT(client.placement()->epoch(), epoch_before) << "the dead worker's experts should have moved";
  EXPECT_GE(client.stats().retries, 1u);
}

}  // namespace
}  // namespace moe::test
