// moectl update-weights rolled out layer by layer (issue 15, part 2): the workers' --memory-bytes holds
// the model once plus one MoE layer, not twice, so the coordinator prepares, commits and releases one
// layer's new version at a time. Under load from three checked client threads (every reply against
// LocalEngine on the old and the new checkpoint: each call old or new for its layer, never a mix, none
// failed), afterwards every layer new, and each worker's peak of expert weights within its --memory-bytes.
// Also: a step that fails (layer 1 of the checkpoint broken) stops with layer 0 on the new version and
// says so; a coordinator restart after the first layer (the state file keeps the layers done; status says
// the update stopped; update-weights with another checkpoint is refused, with the same one it finishes).
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include <nlohmann/json.hpp>

#include "kernels/expert_backend.h"
#include "tests/integration/live_weights/live_weights_util.h"

namespace moe::integration {
namespace {

// Bytes a CPU backend (the workers' kind, same kernel choice) holds for one expert of the served model.
uint64_t resident_bytes_of(const LayerSource& source, ExpertKey key) {
  auto backend = make_cpu_backend(1);
  ExpertWeights w = source.expert_weights(key.layer, key.expert);
  backend->load_expert(key, w.view);
  return backend->resident_bytes();
}

// The largest "peak N bytes" a worker logged at its prepares.
uint64_t logged_peak(const std::string& log) {
  static const std::regex peak("\\(peak ([0-9]+) bytes, --memory-bytes ([0-9]+)\\)");
  uint64_t most = 0;
  for (std::sregex_iterator it(log.begin(), log.end(), peak), end; it != end; ++it) {
    most = std::max<uint64_t>(most, std::stoull((*it)[1].str()));
  }
  return most;
}

// What `moectl status` prints now (each call its own log file).
std::string status_text(TestCluster& cluster) {
  static std::atomic<int> calls{0};
  const std::string log = "moectl-status-" + std::to_string(calls++) + ".log";
  moectl(cluster, {"status", "--cluster", cluster.coordinator_address()}, log);
  const std::string text = read_text(cluster.dir() / log);
  std::filesystem::remove(cluster.dir() / log);
  return text;
}

class LayerwiseUpdate : public ClusterTest {
 protected:
  void SetUp() override {
    ClusterTest::SetUp();
    require_binaries({"moectl"});
    new_dir_ = scratch_dir("layerwise_new_checkpoint");
    write_perturbed(new_dir_);
    jobs_ = make_jobs(new_dir_, 24);
    HfLayerSource source(served_dir());
    const ModelSpec& spec = source.spec();
    for (int32_t layer : spec.moe_layers) {
      for (int32_t expert = 0; expert < spec.experts_per_layer(); ++expert) {
        const uint64_t bytes = resident_bytes_of(source, {layer, expert});
        expert_bytes_[{layer, expert}] = bytes;
        model_bytes_ += bytes;
      }
    }
    // Two replicas of each expert over three workers: each holds about 2/3 of the model, and about 1/3 of
    // it more for one layer's new version; two whole versions are about 4/3 of it.
    memory_bytes_ = model_bytes_ * 6 / 5;
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(new_dir_, ignored);  // first: ClusterTest removes the emptied parent
    ClusterTest::TearDown();
  }

  TestClusterOptions options(uint32_t grace_ms = TestClusterOptions{}.grace_ms) {
    TestClusterOptions o;
    o.model_flags = {"--model", served_dir().string()};
    o.workers = 3;
    o.replicas = 2;
    o.state_file = true;
    o.grace_ms = grace_ms;
    o.worker_flags = {"--memory-bytes", std::to_string(memory_bytes_), "--slots", "18"};
    // No periodic rebalance: on a slow (ASan) run one could fire before update-weights and thin out the
    // workers' experts until two whole versions fit, and the update would then not go layer by layer.
    o.coordinator_flags = {"--rebalance-threshold", "0"};
    return o;
  }

  // Per worker address, the bytes its experts take (all of them, and per layer), from the placement;
  // checks the premise: the model once plus any one layer's new version fits, two whole versions do not.
  std::map<std::string, uint64_t> check_memory_premise(TestCluster& cluster) {
    ClusterClient client(cluster.coordinator_address(), f32_client());
    auto placement = client.placement();
    std::map<std::string, uint64_t> held;
    std::map<std::string, std::map<int32_t, uint64_t>> per_layer;
    for (const auto& [key, bytes] : expert_bytes_) {
      for (const auto& replica : placement->replicas(key.layer, key.expert)) {
        const std::string address = placement->worker(replica.worker_id).address;
        held[address] += bytes;
        per_layer[address][key.layer] += bytes;
      }
    }
    EXPECT_EQ(held.size(), 3u);
    for (const auto& [address, bytes] : held) {
      uint64_t largest_layer = 0;
      for (const auto& [layer, layer_bytes] : per_layer[address]) largest_layer = std::max(largest_layer, layer_bytes);
      EXPECT_LE(bytes + largest_layer, memory_bytes_) << address << ": the model once plus one layer must fit";
      EXPECT_GT(2 * bytes, memory_bytes_) << address << ": two whole versions must not fit";
      std::cout << "worker " << address << ": " << bytes << " bytes of experts, largest layer " << largest_layer
                << ", --memory-bytes " << memory_bytes_ << "\n";
    }
    return held;
  }

  std::filesystem::path new_dir_;
  std::vector<TwoModelJob> jobs_;
  std::map<ExpertKey, uint64_t> expert_bytes_;
  uint64_t model_bytes_ = 0;
  uint64_t memory_bytes_ = 0;
};

TEST_F(LayerwiseUpdate, UnderLoadWithinEachWorkersMemory) {
  TestCluster& cluster = start_cluster(options());
  cluster.wait_ready();
  const auto held = check_memory_premise(cluster);
  CheckedLoad load(cluster.coordinator_address(), jobs_);
  ASSERT_TRUE(load.wait_for(1, 60, 20s)) << "the load did not get going";

  // moectl status while it runs: the layers done out of the total.
  std::atomic<bool> updating{true};
  std::string progress;
  std::thread watcher([&] {
    const auto give_up = std::chrono::steady_clock::now() + 60s;
    for (int i = 0; i < 600 && updating && std::chrono::steady_clock::now() < give_up; ++i) {
      const std::string text = status_text(cluster);
      const auto at = text.find("layer by layer: 1/2");
      if (at != std::string::npos) {
        progress = text.substr(at, text.find('\n', at) - at);
        return;
      }
    }
  });
  const std::string rc =
      update_weights(cluster, new_dir_.string(), "moectl-update.log");
  updating = false;
  watcher.join();
  EXPECT_EQ(rc, "exit 0") << read_text(cluster.dir() / "moectl-update.log") << cluster.logs();
  EXPECT_NE(read_text(cluster.dir() / "moectl-update.log").find("weight version 1 -> 2"), std::string::npos)
      << read_text(cluster.dir() / "moectl-update.log");
  // The step after the first layer is in the coordinator's log; `moectl status` sampled during the update
  // shows it too when a sample lands in that step (its window is about one grace period: on a slow,
  // sanitized run the samples can miss it; the failed-step test checks the status line itself).
  EXPECT_NE(read_text(cluster.dir() / "moe-coordinator.log").find(" layer by layer, 1/2 done; preparing "),
            std::string::npos)
      << cluster.logs();
  if (!progress.empty()) EXPECT_NE(progress.find("1/2 MoE layers on v2"), std::string::npos) << progress;
  std::cout << "status during the update: " << (progress.empty() ? "(no sample in the 1/2 step)" : progress) << "\n";

  // Past the grace period the old version is released everywhere: every call from then on is the new one's.
  std::this_thread::sleep_for(std::chrono::milliseconds(3 * TestClusterOptions{}.grace_ms));
  const auto released = std::chrono::steady_clock::now();
  EXPECT_TRUE(load.wait_for(2, 90, 20s)) << "too few calls on the new version";
  load.stop();
  for (const std::string& p : load.problems()) ADD_FAILURE() << p;
  EXPECT_GT(load.calls_of(1), 0u);
  EXPECT_EQ(load.old_calls_since(released), 0u) << "calls begun after the release were answered by the old version";
  std::cout << "calls: " << load.calls_of(1) << " on version 1, " << load.calls_of(2) << " on version 2\n";
  EXPECT_EQ(workers_on_version(cluster, 2), 3u) << read_text(cluster.dir() / "moectl-status.log");

  // It went layer by layer (two epochs, the first with one layer ahead), and no worker's expert weights
  // ever passed its --memory-bytes, while each did hold a layer's new version beside the old model.
  const std::string coordinator_log = cluster.coordinator().log();
  const auto why = coordinator_log.find("goes layer by layer");
  ASSERT_NE(why, std::string::npos) << coordinator_log;
  std::cout << "coordinator: ..." << coordinator_log.substr(why, coordinator_log.find('\n', why) - why) << "\n";
  for (size_t i = 0; i < cluster.worker_count(); ++i) {
    const std::string log = cluster.worker(i).log();
    EXPECT_NE(log.find("(1 MoE layers in a newer weight version)"), std::string::npos) << log;
    const uint64_t peak = logged_peak(log);
    EXPECT_LE(peak, memory_bytes_) << "worker " << i << "'s expert weights passed its --memory-bytes\n" << log;
    ASSERT_TRUE(held.count(cluster.worker_address(i)));
    EXPECT_GT(peak, held.at(cluster.worker_address(i))) << "worker " << i << " never held a new layer beside the model";
    std::cout << "worker " << i << ": peak " << peak << " bytes of expert weights, --memory-bytes " << memory_bytes_ << "\n";
  }
}

// A step that fails (a checkpoint whose routers and layer 0 read well, but one expert of layer 1 is
// missing from its index) stops the update there: layer 0 keeps the new version, layer 1 the old, moectl
// and status say so, no call fails meanwhile, another checkpoint is refused until this one is finished,
// and the same one fails the same way again (nothing half-loaded is left on the workers).
TEST_F(LayerwiseUpdate, AFailedStepStopsWithTheLayersDoneOnTheNewVersion) {
  TestCluster& cluster = start_cluster(options());
  cluster.wait_ready();
  check_memory_premise(cluster);
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
  CheckedLoad load(cluster.coordinator_address(), jobs_);  // the broken checkpoint's layer 0 is the new model's
  ASSERT_TRUE(load.wait_for(1, 60, 20s)) << "the load did not get going";
  const std::vector<std::string> update = {"update-weights", "--cluster", cluster.coordinator_address(), "--model",
                                           broken.string()};
  EXPECT_EQ(moectl(cluster, update, "moectl-broken.log"), "exit 1");
  const std::string log = read_text(cluster.dir() / "moectl-broken.log");
  EXPECT_NE(log.find("stopped after 1 of 2 MoE layers: prepare of MoE layer(s) 1 failed"), std::string::npos) << log;
  EXPECT_NE(log.find("expert 3 of layer 1"), std::string::npos) << log;
  EXPECT_NE(log.find("the layers done keep serving version 2, the others version 1"), std::string::npos) << log;
  const std::string status = status_text(cluster);
  EXPECT_NE(status.find("layer by layer: 1/2 MoE layers on v2"), std::string::npos) << status;
  EXPECT_NE(status.find("stopped after 1 of 2 MoE layers (prepare of MoE layer(s) 1 failed)"), std::string::npos) << status;
  // Calls go on, layer 0 in version 2 and layer 1 in version 1 - also while a worker restarted now gets
  // experts again (those that move load in the version of their layer).
  EXPECT_TRUE(load.wait_for(2, 60, 20s)) << "no calls on version 2";
  cluster.restart_worker(0);
  const std::regex rejoined("committed epoch [0-9]+ \\(1 MoE layers in a newer weight version\\) as worker [0-9]+: "
                            "[1-9][0-9]* experts assigned");
  const auto rejoin_deadline = std::chrono::steady_clock::now() + 30s;
  while (!std::regex_search(cluster.worker(0).log(), rejoined) && std::chrono::steady_clock::now() < rejoin_deadline) {
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(std::regex_search(cluster.worker(0).log(), rejoined)) << cluster.logs();
  // Its prepare already loaded each expert in its layer's version (nothing left for the commit to load).
  EXPECT_EQ(cluster.worker(0).log().find("loaded late"), std::string::npos) << cluster.worker(0).log();
  std::cout << "restarted worker: " << cluster.worker(0).log() << "\n";
  EXPECT_TRUE(load.wait_for(2, 60, 20s)) << "no calls on version 2 after the worker restart";
  load.stop();
  for (const std::string& p : load.problems()) ADD_FAILURE() << p;
  ClusterClient client(cluster.coordinator_address(), f32_client());
  const int32_t first = client.model()->spec.moe_layers.front();
  for (const auto& job : jobs_) {
    uint64_t version = 0;
    const Matrix got = client.forward_versioned(job.layer, job.x, &version);
    EXPECT_EQ(version, job.layer == first ? 2u : 1u) << "layer " << job.layer;
    EXPECT_LT(relative_error(got, job.layer == first ? job.new_out : job.old_out), kTolerance) << "layer " << job.layer;
  }
  // Another checkpoint is refused; the same one stops at the same layer again.
  EXPECT_EQ(update_weights(cluster, new_dir_.string(), "moectl-other.log"),
            "exit 1");
  EXPECT_NE(read_text(cluster.dir() / "moectl-other.log").find("finish it first"), std::string::npos)
      << read_text(cluster.dir() / "moectl-other.log");
  EXPECT_EQ(moectl(cluster, update, "moectl-broken-again.log"), "exit 1");
  const std::string again = read_text(cluster.dir() / "moectl-broken-again.log");
  EXPECT_NE(again.find("stopped after 1 of 2 MoE layers: prepare of MoE layer(s) 1 failed"), std::string::npos) << again;
  for (size_t i = 0; i < cluster.worker_count(); ++i) EXPECT_LE(logged_peak(cluster.worker(i).log()), memory_bytes_);
}

TEST_F(LayerwiseUpdate, ACoordinatorRestartMidwayIsFinishedByTheSameCheckpoint) {
  // A long grace period: the first layer's epoch stays the newest long enough to kill the coordinator then.
  TestCluster& cluster = start_cluster(options(4000));
  cluster.wait_ready();
  check_memory_premise(cluster);
  std::string rc;
  std::thread update([&] {
    rc = update_weights(cluster, new_dir_.string(), "moectl-update-cut.log");
  });
  bool midway = false;
  const auto give_up = std::chrono::steady_clock::now() + 30s;
  while (!midway && std::chrono::steady_clock::now() < give_up) midway = status_text(cluster).find("layer by layer: 1/2") != std::string::npos;
  ASSERT_TRUE(midway) << cluster.logs();
  cluster.kill_coordinator();
  update.join();
  EXPECT_NE(rc, "exit 0") << "moectl did not notice the coordinator die";
  cluster.start_coordinator();
  cluster.wait_ready();

  // Restarted: it says the update stopped part way, and serves layer 0 new, layer 1 old.
  const std::string status = status_text(cluster);
  EXPECT_NE(status.find("stopped after 1 of 2 MoE layers (the coordinator restarted during it)"), std::string::npos) << status;
  EXPECT_NE(status.find("layer by layer: 1/2 MoE layers on v2"), std::string::npos) << status;
  {
    ClusterClient client(cluster.coordinator_address(), f32_client());
    for (const auto& job : jobs_) {
      uint64_t version = 0;
      const Matrix got = client.forward_versioned(job.layer, job.x, &version);
      const bool first = job.layer == client.model()->spec.moe_layers.front();
      EXPECT_EQ(version, first ? 2u : 1u) << "layer " << job.layer;
      EXPECT_LT(relative_error(got, first ? job.new_out : job.old_out), kTolerance) << "layer " << job.layer;
    }
  }

  // Another checkpoint cannot start over it; the same one finishes it.
  const std::filesystem::path other = cluster.dir() / "other";
  std::filesystem::copy(new_dir_, other);
  EXPECT_EQ(update_weights(cluster, other.string(), "moectl-other.log"),
            "exit 1");
  EXPECT_NE(read_text(cluster.dir() / "moectl-other.log").find("finish it first"), std::string::npos)
      << read_text(cluster.dir() / "moectl-other.log");
  EXPECT_EQ(update_weights(cluster, new_dir_.string(), "moectl-update.log"),
            "exit 0")
      << read_text(cluster.dir() / "moectl-update.log") << cluster.logs();
  ClusterClient client(cluster.coordinator_address(), f32_client());
  for (const auto& job : jobs_) {
    uint64_t version = 0;
    EXPECT_LT(relative_error(client.forward_versioned(job.layer, job.x, &version), job.new_out), kTolerance);
    EXPECT_EQ(version, 2u);
  }
  EXPECT_EQ(status_text(cluster).find("layer by layer"), std::string::npos);
  for (size_t i = 0; i < cluster.worker_count(); ++i) EXPECT_LE(logged_peak(cluster.worker(i).log()), memory_bytes_);
}

}  // namespace
}  // namespace moe::integration
