// The cluster's state lives in the cluster (issue 10): real daemons on 127.0.0.1, synthetic "tiny" model.
// A coordinator restarted without a state file, or with a stale one, adopts the epoch and placement the
// workers report and keeps every worker's id; an unwritable state file is refused before anything starts;
// a restarted worker (same name and address) keeps its id; dead workers leave after --dead-worker-ttl-ms;
// a worker with a wrong cluster token gives up with one clear line and a non-zero exit.
#include <gtest/gtest.h>

#include <filesystem>

#include "tests/integration/failover_util.h"

namespace moe::integration {
namespace {

class Recovery : public ClusterTest {};

// Kills worker `victim` and waits for the epoch that re-homes its experts; returns that placement.
ClientPlacement lose_worker(TestCluster& cluster, size_t victim, const ClientPlacement& before, const ModelSpec& spec) {
  const uint32_t gone = TestCluster::worker_id(before, cluster.worker_address(victim));
  cluster.kill_worker(victim);
  return cluster.wait_for_placement(
      "the epoch after worker " + std::to_string(victim) + " died",
      [&](const ClientPlacement& p) { return p.epoch() > before.epoch() && placed_without(p, gone, spec); }, 10s);
}

// Status shows exactly the workers `indices` alive (a stale state file may still list dead ones), all
// active with experts, at an epoch above `above`.
ClusterStatus wait_adopted(TestCluster& cluster, std::initializer_list<size_t> indices, uint64_t above) {
  return cluster.wait_for_status(
      "the restarted coordinator adopts the workers' placement above epoch " + std::to_string(above),
      [&](const ClusterStatus& s) {
        size_t alive = 0;
        for (const auto& w : s.workers) alive += w.state != wire::WorkerState::DEAD;
        if (s.epoch <= above || alive != indices.size()) return false;
        for (size_t i : indices) {
          const StatusWorker* w = s.find(cluster.worker_address(i));
          if (w == nullptr || w->state != wire::WorkerState::ACTIVE || w->hosted == 0) return false;
        }
        return true;
      },
      10s);
}

TEST_F(Recovery, CoordinatorRestartWithoutStateFileAdoptsTheWorkersPlacement) {
  TestCluster& cluster = start_cluster(tiny_cluster(3, 1));
  const ClientPlacement first = cluster.wait_ready();
  const auto jobs = reference_jobs(12);
  ClusterClient client(cluster.coordinator_address(), f32_client(5s));
  const ClientPlacement saved = lose_worker(cluster, 2, first, client.spec());
  const uint32_t id0 = TestCluster::worker_id(saved, cluster.worker_address(0));
  const uint32_t id1 = TestCluster::worker_id(saved, cluster.worker_address(1));
  for (const Job& job : jobs) ASSERT_EQ(expect_right(client, job), "") << "before the restart";

  cluster.kill_coordinator();
  cluster.start_coordinator();  // no state file: everything it learns comes from the workers
  const ClusterStatus status = wait_adopted(cluster, {0, 1}, saved.epoch());
  EXPECT_EQ(status.find(cluster.worker_address(0))->id, id0) << "worker 0 should keep its id";
  EXPECT_EQ(status.find(cluster.worker_address(1))->id, id1) << "worker 1 should keep its id";

  for (const Job& job : jobs) EXPECT_EQ(expect_right(client, job), "") << "old client after the restart";
  ClusterClient fresh(cluster.coordinator_address(), f32_client(5s));
  EXPECT_GT(fresh.placement()->epoch(), saved.epoch());
  for (const Job& job : jobs) EXPECT_EQ(expect_right(fresh, job), "") << "new client after the restart";
}

TEST_F(Recovery, StaleStateFileIsOvertakenByWhatTheWorkersServe) {
  TestClusterOptions options = tiny_cluster(3, 1);
  options.state_file = true;
  TestCluster& cluster = start_cluster(options);
  const ClientPlacement first = cluster.wait_ready();
  const std::filesystem::path old_state = cluster.dir() / "state-of-epoch-1.json";
  std::filesystem::copy_file(cluster.state_file(), old_state);
  const auto jobs = reference_jobs(12);
  ClusterClient client(cluster.coordinator_address(), f32_client(5s));
  const ClientPlacement saved = lose_worker(cluster, 2, first, client.spec());
  for (const Job& job : jobs) ASSERT_EQ(expect_right(client, job), "") << "before the restart";

  cluster.kill_coordinator();
  std::filesystem::copy_file(old_state, cluster.state_file(), std::filesystem::copy_options::overwrite_existing);
  cluster.start_coordinator();  // believes in epoch 1 and a worker that is gone
  wait_adopted(cluster, {0, 1}, saved.epoch());
  for (const Job& job : jobs) EXPECT_EQ(expect_right(client, job), "") << "old client after the restart";
  ClusterClient fresh(cluster.coordinator_address(), f32_client(5s));
  for (const Job& job : jobs) EXPECT_EQ(expect_right(fresh, job), "") << "new client after the restart";
}

TEST_F(Recovery, UnwritableStateFileIsRefusedAtStartAndByCheckConfig) {
  const auto dir = scratch_dir("Recovery.UnwritableStateFile");
  const std::filesystem::path not_a_folder = dir / "a-file";
  { std::ofstream(not_a_folder) << "x"; }
  struct Case {
    std::string path, says;
  };
  for (const Case& c : {Case{(dir / "missing-folder" / "state.json").string(), "does not exist"},
                        Case{(not_a_folder / "state.json").string(), "does not exist"},
                        Case{dir.string(), "is a folder"}}) {
    for (bool check : {true, false}) {
      std::vector<std::string> argv{bin_path("moe-coordinator"), "--synthetic", "tiny", "--listen", "127.0.0.1:0",
                                    "--state-file", c.path};
      if (check) argv.push_back("--check-config");
      const auto log = dir / (check ? "check.log" : "start.log");
      const std::string status = run_to_completion(argv, log, 20s);
      const std::string text = read_text(log);
      EXPECT_NE(status, "exit 0") << c.path << (check ? " --check-config" : "") << ":\n" << text;
      EXPECT_NE(text.find(c.says), std::string::npos) << c.path << (check ? " --check-config" : "") << ":\n" << text;
      EXPECT_EQ(text.find("listening on"), std::string::npos) << "it must not start serving:\n" << text;
    }
  }
}

TEST_F(Recovery, RestartedWorkerKeepsItsIdentity) {
  TestCluster& cluster = start_cluster(tiny_cluster(3, 1));
  const ClientPlacement first = cluster.wait_ready();
  const uint32_t id1 = TestCluster::worker_id(first, cluster.worker_address(1));
  cluster.restart_worker(1);  // kill -9, then the same name and address again
  const ClusterStatus status = cluster.wait_for_status(
      "the restarted worker 1 back under id " + std::to_string(id1) + " with experts, three workers listed",
      [&](const ClusterStatus& s) {
        const StatusWorker* w = s.find(cluster.worker_address(1));
        return s.epoch > first.epoch() && s.workers.size() == 3 && w && w->id == id1 &&
               w->state == wire::WorkerState::ACTIVE && w->hosted > 0;
      },
      15s);
  for (const auto& w : status.workers) EXPECT_NE(w.state, wire::WorkerState::DEAD) << w.address;
  const auto jobs = reference_jobs(12);
  ClusterClient client(cluster.coordinator_address(), f32_client(5s));
  for (const Job& job : jobs) EXPECT_EQ(expect_right(client, job), "") << "after the restart";
}

TEST_F(Recovery, DeadWorkersLeaveStatusAfterTheirTtl) {
  TestClusterOptions options = tiny_cluster(3, 1);
  options.coordinator_flags = {"--dead-worker-ttl-ms", "300"};
  TestCluster& cluster = start_cluster(options);
  const ClientPlacement first = cluster.wait_ready();
  cluster.kill_worker(2);
  cluster.wait_for_status(
      "worker 2 marked dead, then forgotten",
      [&](const ClusterStatus& s) { return s.epoch > first.epoch() && s.workers.size() == 2 && !s.find(cluster.worker_address(2)); },
      10s);
}

TEST_F(Recovery, WorkerWithAWrongTokenExitsAfterBoundedTries) {
  TestClusterOptions options = tiny_cluster(1, 1);
  options.cluster_token = "the-right-token";  // every daemon and every status / placement query
  TestCluster& cluster = start_cluster(options);
  cluster.wait_ready();
  DaemonProcess intruder({bin_path("moe-worker"), "--coordinator", cluster.coordinator_address(), "--listen",
                          "127.0.0.1:0", "--name", "intruder", "--threads", "1", "--cluster-token", "a-wrong-token",
                          "--allow-cleartext-token"},
                         cluster.dir() / "moe-intruder.log");
  ASSERT_TRUE(intruder.wait_exit(30s)) << "the worker with a wrong token should give up:\n" << intruder.log_tail();
  EXPECT_EQ(intruder.exit_status(), "exit 1") << intruder.log_tail();
  const std::string log = intruder.log();
  EXPECT_NE(log.find("refused this worker 5 times in a row"), std::string::npos) << log;
  EXPECT_NE(log.find("wrong cluster token"), std::string::npos) << log;
}

}  // namespace
}  // namespace moe::integration
