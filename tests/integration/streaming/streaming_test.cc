// --no-shared-storage with real processes: a coordinator and three workers on the synthetic tiny model
// (MOE_NO_SHARED_STORAGE=1 in the environment reaches the coordinator, the workers also get the flag).
// `moectl drain` moves a worker's experts to the others, which must stream them from the drained worker
// (their logs say from which peer, and nothing falls back to the model source), and ClusterClient's
// outputs must match LocalEngine before and after.
#include <gtest/gtest.h>

#include <stdlib.h>

#include <chrono>
#include <thread>

#include "runtime/client/cluster_client.h"
#include "tests/integration/integration_util.h"

namespace moe::integration {
namespace {

constexpr double kTolerance = 1e-4;  // f32 on the wire

ClusterClientOptions f32_client() {
  ClusterClientOptions o;
  o.wire_dtype = wire::DType::F32;
  o.deadline = 5s;
  o.request_timeout = 1s;
  return o;
}

// Every layer of the tiny model on the cluster vs LocalEngine; returns the worst relative error.
double worst_error(const std::string& coordinator) {
  ClusterClient client(coordinator, f32_client());
  auto reference = tiny_reference();
  double worst = 0;
  uint32_t seed = 1;
  for (int32_t layer : reference->spec().moe_layers) {
    for (int64_t rows : {1, 7, 33}) {
      Matrix x = random_input(rows, reference->spec().hidden_size, seed++);
      worst = std::max(worst, relative_error(client.forward(layer, x), reference->forward(layer, x)));
    }
  }
  return worst;
}

// Polls until one of the workers' logs has a line with `marker`; returns that worker's index.
std::optional<size_t> worker_logging(TestCluster& cluster, const std::string& marker, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  do {
    for (size_t i = 0; i < cluster.worker_count(); ++i) {
      if (cluster.worker(i).log().find(marker) != std::string::npos) return i;
    }
    std::this_thread::sleep_for(20ms);
  } while (std::chrono::steady_clock::now() < deadline);
  return std::nullopt;
}

class Streaming : public ClusterTest {
 protected:
  void SetUp() override {
    ClusterTest::SetUp();
    require_binaries({"moectl"});
    ::setenv("MOE_NO_SHARED_STORAGE", "1", 1);
  }
  void TearDown() override {
    ClusterTest::TearDown();
    ::unsetenv("MOE_NO_SHARED_STORAGE");
  }
};

TEST_F(Streaming, DrainedExpertsAreStreamedFromTheDrainedWorker) {
  TestClusterOptions options;
  options.model_flags = tiny_model_flags();
  options.workers = 3;
  options.worker_flags = {"--no-shared-storage"};
  TestCluster& cluster = start_cluster(options);
  const ClientPlacement before = cluster.wait_ready();
  EXPECT_LT(worst_error(cluster.coordinator_address()), kTolerance);
  // The first placement has no holders: it reads the model source, without trying any peer.
  EXPECT_FALSE(worker_logging(cluster, "streamed ", 0ms)) << cluster.logs();

  const std::string victim_address = cluster.worker_address(2);
  const uint32_t victim = TestCluster::worker_id(before, victim_address);
  const std::string log = (cluster.dir() / "moectl-drain.log").string();
  EXPECT_EQ(run_to_completion({bin_path("moectl"), "drain", "--cluster", cluster.coordinator_address(),
                               std::to_string(victim)},
                              log, 30s),
            "exit 0")
      << read_text(log);
  cluster.wait_for_placement("the drained worker's experts on the others",
                             [&](const ClientPlacement& p) { return p.epoch() > before.epoch(); }, 10s);

  const std::optional<size_t> streamer = worker_logging(cluster, "from peer " + victim_address, 10s);
  ASSERT_TRUE(streamer) << "no survivor streamed from the drained worker " << victim_address << "\n" << cluster.logs();
  EXPECT_NE(*streamer, 2u);
  EXPECT_NE(cluster.worker(*streamer).log().find("moe-worker"), std::string::npos);
  EXPECT_FALSE(worker_logging(cluster, "loading them from the model source", 0ms)) << cluster.logs();
  EXPECT_FALSE(worker_logging(cluster, "; trying their next source", 0ms)) << cluster.logs();

  EXPECT_TRUE(cluster.worker(2).wait_exit(10s)) << "the drained worker did not exit\n" << cluster.logs();
  EXPECT_LT(worst_error(cluster.coordinator_address()), kTolerance);
}

}  // namespace
}  // namespace moe::integration
