// `moectl demo --cluster`: drives a cluster it did not start (as the docker-compose demo service drives
// the compose cluster), checks every output against a LocalEngine of the model the coordinator names,
// and leaves the cluster running; against a --cluster-token cluster only with the token.
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

// A cluster started with a cluster token: moectl without it is refused (its first request, the readiness
// query, already) with a message that says so; with --cluster-token (or MOE_CLUSTER_TOKEN) they go through.
TEST_F(MoectlDemoCluster, ForwardsNeedTheClusterTokenOfATokenCluster) {
  require_binaries({"moectl"});
  TestClusterOptions options;
  options.model_flags = {"--synthetic", "tiny", "--seed", "0"};
  options.workers = 2;
  options.cluster_token = "s3cret";
  TestCluster& cluster = start_cluster(options);
  cluster.wait_ready();
  const std::vector<std::string> demo = {bin_path("moectl"), "demo", "--cluster", cluster.coordinator_address(),
                                         "--batches", "4", "--clients", "1", "--tokens", "4"};

  const fs::path refused_log = cluster.dir() / "demo-no-token.log";
  EXPECT_EQ(run_to_completion(demo, refused_log, 60s), "exit 1") << read_text(refused_log);
  EXPECT_NE(read_text(refused_log).find("without a cluster token"), std::string::npos)
      << read_text(refused_log);

  std::vector<std::string> with_token = demo;
  with_token.insert(with_token.end(), {"--cluster-token", "s3cret"});
  const fs::path ok_log = cluster.dir() / "demo-token.log";
  EXPECT_EQ(run_to_completion(with_token, ok_log, 60s), "exit 0") << read_text(ok_log);
  EXPECT_NE(read_text(ok_log).find("mismatches 0; errors 0"), std::string::npos) << read_text(ok_log);
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
