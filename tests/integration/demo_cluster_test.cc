// `moectl demo --cluster`: drives a cluster it did not start (as the docker-compose demo service drives
// the compose cluster), checks every output against a LocalEngine of the model the coordinator names,
// and leaves the cluster running.
#include <gtest/gtest.h>

#include "tests/integration/integration_util.h"

namespace moe::integration {
namespace {

namespace fs = std::filesystem;

class MoectlDemoCluster : public ClusterTest {};

TEST_F(MoectlDemoCluster, DrivesARunningClusterAndLeavesItRunning) {
  require_binaries({"moectl"});
  TestClusterOptions options;
  const fs::path model = testdata::hf_moe_dir() / "mixtral_f32";
  options.model_flags = {"--model", model.string()};
  options.workers = 2;
  TestCluster& cluster = start_cluster(options);
  const uint64_t epoch = cluster.wait_ready().epoch();

  const fs::path log = cluster.dir() / "moectl-demo.log";
  const std::string status =
      run_to_completion({bin_path("moectl"), "demo", "--cluster", cluster.coordinator_address(), "--batches", "24",
                         "--clients", "2", "--tokens", "8", "--ready-timeout-s", "30"},
                        log, 60s);
  const std::string text = read_text(log);
  ASSERT_EQ(status, "exit 0") << text;
  // The reference is the model the coordinator names (its path as the coordinator normalised it).
  EXPECT_NE(text.find("(source hf:/"), std::string::npos) << text;
  EXPECT_NE(text.find("/mixtral_f32)"), std::string::npos) << text;
  EXPECT_NE(text.find("demo: done: 24 batches"), std::string::npos) << text;
  EXPECT_NE(text.find("mismatches 0; errors 0"), std::string::npos) << text;
  EXPECT_NE(text.find("keeps running; PASS"), std::string::npos) << text;
  // Still serving, same epoch.
  EXPECT_EQ(cluster.wait_ready().epoch(), epoch);
}

TEST_F(MoectlDemoCluster, NamesTheAddressWhenNothingServesThere) {
  require_binaries({"moectl"});
  const fs::path dir = scratch_dir("demo_cluster_nothing");
  const fs::path log = dir / "moectl-demo.log";
  const std::string status = run_to_completion(
      {bin_path("moectl"), "demo", "--cluster", "127.0.0.1:1", "--ready-timeout-s", "1"}, log, 30s);
  const std::string text = read_text(log);
  EXPECT_EQ(status, "exit 1") << text;
  EXPECT_NE(text.find("cluster at 127.0.0.1:1 not ready after 1000 ms"), std::string::npos) << text;
}

}  // namespace
}  // namespace moe::integration
