// moectl update-weights on real daemons (issue 15, part 2). The served model is the Qwen2-MoE testdata
// checkpoint (a shared expert with its sigmoid gate, so the client's routers and gate must change with the
// experts); the new checkpoint is made here from it with every router row rotated by one expert, the
// shared gate negated and the experts' matrices scaled (a different model of the same shapes). Three
// client threads call the cluster all along, and every reply is judged whole against LocalEngine on each
// checkpoint: it must equal the old model's output or the new one's (never a mix), agree with the
// version the client says computed it, and no call may fail. After the update every call is the new
// model's. Run on shared storage and with --no-shared-storage (the seed worker reads the checkpoint, the
// others stream from it). Also: refusals of a checkpoint of other shapes and of a corrupt one (the old
// version keeps serving), and a coordinator restart after the update (the state file keeps the version).
#include <gtest/gtest.h>

#include <signal.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <mutex>
#include <regex>
#include <thread>

#include <nlohmann/json.hpp>

#include "runtime/client/cluster_client.h"
#include "runtime/model/hf_checkpoint_writer.h"
#include "runtime/model/hf_layer_source.h"
#include "tests/integration/integration_util.h"
#include "tests/integration/live_weights/live_weights_util.h"

namespace moe::integration {
namespace {

class LiveWeights : public ClusterTest {
 protected:
  void SetUp() override {
    ClusterTest::SetUp();
    require_binaries({"moectl"});
    new_dir_ = scratch_dir("live_weights_new_checkpoint");
    write_perturbed(new_dir_);
    jobs_ = make_jobs(new_dir_, 24);
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(new_dir_, ignored);  // first: ClusterTest removes the emptied parent
    ClusterTest::TearDown();
    ::unsetenv("MOE_NO_SHARED_STORAGE");
  }

  TestClusterOptions options(bool shared_storage) {
    TestClusterOptions o;
    o.model_flags = {"--model", served_dir().string()};
    o.workers = 3;
    o.replicas = 2;
    o.state_file = true;
    if (!shared_storage) {
      ::setenv("MOE_NO_SHARED_STORAGE", "1", 1);  // reaches the coordinator
      o.worker_flags = {"--no-shared-storage"};
    }
    return o;
  }

  // For the coordinator-restart tests: the production lease (3 s) instead of the harness's 600 ms. A
  // restarted coordinator gives the workers one lease to register again; on a loaded CI machine a worker
  // sometimes took longer than 600 ms, was declared dead and re-placed, and the test then waited for a
  // catch-up that could no longer happen.
  TestClusterOptions restart_options(bool shared_storage) {
    TestClusterOptions o = options(shared_storage);
    o.lease_ms = 3000;
    return o;
  }

  // The whole check: load, update-weights, load until every thread runs on the new version.
  void update_under_load(TestCluster& cluster) {
    cluster.wait_ready();
    CheckedLoad load(cluster.coordinator_address(), jobs_);
    ASSERT_TRUE(load.wait_for(1, 60, 20s)) << "the load did not get going";
    EXPECT_EQ(update_weights(cluster, new_dir_.string(), "moectl-update.log"),
              "exit 0")
        << read_text(cluster.dir() / "moectl-update.log");
    EXPECT_NE(read_text(cluster.dir() / "moectl-update.log").find("weight version 1 -> 2"), std::string::npos)
        << read_text(cluster.dir() / "moectl-update.log");
    // Past the grace period the old version is released everywhere: every call from then on is the new one's.
    std::this_thread::sleep_for(std::chrono::milliseconds(3 * TestClusterOptions{}.grace_ms));
    const auto released = std::chrono::steady_clock::now();
    EXPECT_TRUE(load.wait_for(2, 90, 20s)) << "too few calls on the new version";
    load.stop();
    for (const std::string& p : load.problems()) ADD_FAILURE() << p;
    EXPECT_GT(load.calls_of(1), 0u);
    EXPECT_EQ(load.old_calls_since(released), 0u) << "calls begun after the release were answered by the old version";
    std::cout << "calls: " << load.calls_of(1) << " on version 1, " << load.calls_of(2) << " on version 2\n";
    const ClusterStatus status =
        cluster.wait_for_status("3 workers", [](const ClusterStatus& s) { return s.workers.size() == 3; }, 5s);
    (void)status;
    EXPECT_EQ(workers_on_version(cluster, 2), 3u) << read_text(cluster.dir() / "moectl-status.log");
  }

  std::filesystem::path new_dir_;
  std::vector<TwoModelJob> jobs_;
};

TEST_F(LiveWeights, UpdateUnderLoadWithSharedStorage) {
  TestCluster& cluster = start_cluster(options(true));
  update_under_load(cluster);
}

TEST_F(LiveWeights, UpdateUnderLoadWithoutSharedStorage) {
  TestCluster& cluster = start_cluster(options(false));
  update_under_load(cluster);
  // The seed worker read the checkpoint; the other two streamed the new version from it.
  size_t streamed = 0;
  for (size_t i = 0; i < cluster.worker_count(); ++i) {
    streamed += cluster.worker(i).log().find("streamed ") != std::string::npos;
  }
  EXPECT_EQ(streamed, 2u) << cluster.logs();
}

TEST_F(LiveWeights, RefusedCheckpointsLeaveTheOldVersionServing) {
  TestCluster& cluster = start_cluster(options(true));
  cluster.wait_ready();
  // Other shapes: the Mixtral testdata checkpoint.
  const std::string other = (std::filesystem::path(MOE_TESTDATA_DIR) / "hf_moe" / "mixtral_f32").string();
  EXPECT_EQ(update_weights(cluster, other, "moectl-other.log"),
            "exit 1");
  const std::string other_log = read_text(cluster.dir() / "moectl-other.log");
  EXPECT_NE(other_log.find("does not match the served model"), std::string::npos) << other_log;
  EXPECT_NE(other_log.find("family is mixtral there, qwen2_moe here"), std::string::npos) << other_log;

  // A corrupt copy of the new checkpoint: its tensor data cut short.
  const std::filesystem::path corrupt = cluster.dir() / "corrupt";
  std::filesystem::copy(new_dir_, corrupt);
  std::filesystem::resize_file(corrupt / "model.safetensors", std::filesystem::file_size(corrupt / "model.safetensors") / 2);
  EXPECT_EQ(update_weights(cluster, corrupt.string(), "moectl-corrupt.log"),
            "exit 1");
  const std::string corrupt_log = read_text(cluster.dir() / "moectl-corrupt.log");
  EXPECT_NE(corrupt_log.find("cannot read checkpoint"), std::string::npos) << corrupt_log;
  EXPECT_NE(corrupt_log.find("weight version 1 keeps serving"), std::string::npos) << corrupt_log;

  // A checkpoint whose routers and first expert read well (the coordinator's checks pass) but where one
  // expert of the last layer is missing: the workers' prepares fail, every worker drops what it loaded.
  const std::filesystem::path broken = cluster.dir() / "broken";
  write_hf_checkpoint(PerturbedSource(std::make_shared<HfLayerSource>(served_dir())), broken, DType::BF16, 2);
  {
    nlohmann::json index = nlohmann::json::parse(read_text(broken / "model.safetensors.index.json"));
    const std::string name = "model.layers.1.mlp.experts.3.up_proj.weight";
    ASSERT_TRUE(index["weight_map"].contains(name)) << index.dump();
    const std::string file = index["weight_map"][name];
    index["weight_map"][name] = file == "model-00001-of-00002.safetensors" ? "model-00002-of-00002.safetensors"
                                                                          : "model-00001-of-00002.safetensors";
    std::ofstream(broken / "model.safetensors.index.json") << index.dump(2);
  }
  EXPECT_EQ(update_weights(cluster, broken.string(), "moectl-broken.log"),
            "exit 1");
  const std::string broken_log = read_text(cluster.dir() / "moectl-broken.log");
  EXPECT_NE(broken_log.find("prepare of weight version 2 failed on"), std::string::npos) << broken_log;
  EXPECT_NE(broken_log.find("expert 3 of layer 1"), std::string::npos) << broken_log;
  EXPECT_NE(broken_log.find("weight version 1 keeps serving"), std::string::npos) << broken_log;
  // Every worker dropped what the failed prepare loaded (those whose own prepare succeeded too).
  for (size_t i = 0; i < cluster.worker_count(); ++i) {
    const std::regex dropped("released epoch [0-9]+ \\(dropping unfinished prepares\\): unloaded [1-9]");
    EXPECT_TRUE(std::regex_search(cluster.worker(i).log(), dropped)) << cluster.worker(i).log();
  }

  // Version 1 still serves, and a good update still goes through afterwards.
  ClusterClient client(cluster.coordinator_address(), f32_client());
  uint64_t version = 0;
  for (const auto& job : jobs_) {
    EXPECT_LT(relative_error(client.forward_versioned(job.layer, job.x, &version), job.old_out), kTolerance);
    EXPECT_EQ(version, 1u);
  }
  EXPECT_EQ(update_weights(cluster, new_dir_.string(), "moectl-update.log"),
            "exit 0")
      << read_text(cluster.dir() / "moectl-update.log");
}

TEST_F(LiveWeights, TheVersionSurvivesACoordinatorRestart) {
  TestCluster& cluster = start_cluster(restart_options(true));
  cluster.wait_ready();
  ASSERT_EQ(update_weights(cluster, new_dir_.string(), "moectl-update.log"),
            "exit 0")
      << read_text(cluster.dir() / "moectl-update.log");
  std::this_thread::sleep_for(std::chrono::milliseconds(3 * TestClusterOptions{}.grace_ms));
  cluster.kill_coordinator();
  cluster.start_coordinator();
  cluster.wait_ready();
  // A new client learns version 2 from the restarted coordinator and gets the new model's outputs.
  ClusterClient client(cluster.coordinator_address(), f32_client());
  EXPECT_EQ(client.model()->weight_version, 2u);
  uint64_t version = 0;
  for (const auto& job : jobs_) {
    EXPECT_LT(relative_error(client.forward_versioned(job.layer, job.x, &version), job.new_out), kTolerance);
    EXPECT_EQ(version, 2u);
  }
  // A worker restarted now loads version 2 too.
  cluster.restart_worker(0);
  cluster.wait_for_status("worker 0 back on version 2", [&](const ClusterStatus&) {
    return workers_on_version(cluster, 2) == 3;
  }, 15s);
}

// One update at a time: while one prepares (a worker held stopped, so its prepare waits), a second
// update-weights is refused saying so; the first goes through once the worker runs again.
TEST_F(LiveWeights, ASecondUpdateWhileOneRunsIsRefused) {
  TestCluster& cluster = start_cluster(options(true));
  cluster.wait_ready();
  std::this_thread::sleep_for(std::chrono::milliseconds(3 * TestClusterOptions{}.grace_ms));  // epoch 1 released
  const std::vector<std::string> update = {"update-weights", "--cluster", cluster.coordinator_address(), "--model",
                                           new_dir_.string()};
  ASSERT_EQ(::kill(cluster.worker(1).pid(), SIGSTOP), 0);
  std::string first;
  std::thread first_update([&] { first = moectl(cluster, update, "moectl-first.log"); });
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (cluster.coordinator().log().find("update-weights to version 2") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_NE(cluster.coordinator().log().find("update-weights to version 2"), std::string::npos)
      << "the first update did not start preparing";
  const std::string second = moectl(cluster, update, "moectl-second.log");
  ::kill(cluster.worker(1).pid(), SIGCONT);
  first_update.join();
  EXPECT_EQ(second, "exit 1");
  const std::string second_log = read_text(cluster.dir() / "moectl-second.log");
  EXPECT_NE(second_log.find("is already running"), std::string::npos) << second_log;
  EXPECT_EQ(first, "exit 0") << read_text(cluster.dir() / "moectl-first.log");
  ClusterClient client(cluster.coordinator_address(), f32_client());
  uint64_t version = 0;
  EXPECT_LT(relative_error(client.forward_versioned(jobs_[0].layer, jobs_[0].x, &version), jobs_[0].new_out), kTolerance);
  EXPECT_EQ(version, 2u);
}

// Restarted without its state file, the coordinator adopts the version the workers serve (and the
// checkpoint they report) with their placement.
TEST_F(LiveWeights, ACoordinatorWithoutItsStateFileAdoptsTheWorkersVersion) {
  TestCluster& cluster = start_cluster(options(true));
  cluster.wait_ready();
  ASSERT_EQ(update_weights(cluster, new_dir_.string(), "moectl-update.log"),
            "exit 0")
      << read_text(cluster.dir() / "moectl-update.log");
  std::this_thread::sleep_for(std::chrono::milliseconds(3 * TestClusterOptions{}.grace_ms));
  cluster.kill_coordinator();
  std::filesystem::remove(cluster.state_file());
  cluster.start_coordinator();
  cluster.wait_ready();
  ClusterClient client(cluster.coordinator_address(), f32_client());
  EXPECT_EQ(client.model()->weight_version, 2u);
  uint64_t version = 0;
  for (const auto& job : jobs_) {
    EXPECT_LT(relative_error(client.forward_versioned(job.layer, job.x, &version), job.new_out), kTolerance);
    EXPECT_EQ(version, 2u);
  }
  EXPECT_EQ(workers_on_version(cluster, 2), 3u) << read_text(cluster.dir() / "moectl-status.log");
}

// A worker dies as the update starts: the update either fails naming it (the old version keeps serving)
// or goes through without it; retried, it goes through once its experts are re-homed. No call fails
// meanwhile (replicas 2), none mixes versions, and the survivors end on version 2.
TEST_F(LiveWeights, AWorkerDyingDuringTheUpdate) {
  TestCluster& cluster = start_cluster(options(true));
  cluster.wait_ready();
  CheckedLoad load(cluster.coordinator_address(), jobs_);
  ASSERT_TRUE(load.wait_for(1, 30, 20s)) << "the load did not get going";
  cluster.kill_worker(2);
  const std::vector<std::string> update = {"update-weights", "--cluster", cluster.coordinator_address(), "--model",
                                           new_dir_.string()};
  std::string outcome = moectl(cluster, update, "moectl-update-1.log");
  std::cout << "update-weights beside the dying worker: " << outcome << ": "
            << read_text(cluster.dir() / "moectl-update-1.log") << "\n";
  if (outcome != "exit 0") {
    const std::string log = read_text(cluster.dir() / "moectl-update-1.log");
    EXPECT_NE(log.find("weight version 1 keeps serving"), std::string::npos) << log;
    for (int attempt = 2; attempt <= 5 && outcome != "exit 0"; ++attempt) {
      outcome = moectl(cluster, update, "moectl-update-" + std::to_string(attempt) + ".log");
    }
  }
  EXPECT_EQ(outcome, "exit 0") << cluster.logs();
  EXPECT_TRUE(load.wait_for(2, 60, 20s)) << "no calls on version 2";
  load.stop();
  for (const std::string& p : load.problems()) ADD_FAILURE() << p;
  EXPECT_EQ(workers_on_version(cluster, 2), 2u) << read_text(cluster.dir() / "moectl-status.log");
}

// The coordinator dies after writing the new version's epoch to its state file and before any worker
// heard the commit (the state file is written so here, then the coordinator restarts on it): the
// restarted coordinator serves version 2, and the workers, which still serve the old epoch, get the commit
// again (loading version 2 then). Calls go on through it all and none fails.
TEST_F(LiveWeights, WorkersThatMissedTheCommitCatchUpAfterACoordinatorRestart) {
  TestCluster& cluster = start_cluster(restart_options(true));
  const ClientPlacement before = cluster.wait_ready();
  CheckedLoad load(cluster.coordinator_address(), jobs_);
  ASSERT_TRUE(load.wait_for(1, 30, 20s)) << "the load did not get going";
  cluster.kill_coordinator();
  nlohmann::json state = nlohmann::json::parse(read_text(cluster.state_file()));
  ASSERT_EQ(state["placement"]["epoch"].get<uint64_t>(), before.epoch());
  state["placement"]["epoch"] = before.epoch() + 1;
  state["placement"]["weight_version"] = 2;
  state["weight_source"] = "hf:" + new_dir_.string();
  std::ofstream(cluster.state_file()) << state.dump(2);
  cluster.start_coordinator();
  EXPECT_TRUE(load.wait_for(2, 60, 20s)) << "no calls on version 2 after the restart";
  load.stop();
  for (const std::string& p : load.problems()) ADD_FAILURE() << p;
  EXPECT_EQ(workers_on_version(cluster, 2), 3u) << read_text(cluster.dir() / "moectl-status.log");
  EXPECT_NE(cluster.coordinator().log().find("committing it to them again"), std::string::npos) << cluster.logs();
}

}  // namespace
}  // namespace moe::integration
