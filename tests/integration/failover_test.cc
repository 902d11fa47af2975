// Failures of real daemons on 127.0.0.1 (synthetic "tiny" model, heartbeat 100 ms, lease 600 ms, grace
// 300 ms): a worker SIGKILLed in the middle of a stream of forwards from several threads, the
// coordinator SIGKILLed and restarted on its state file, and a client holding a stale epoch. Every
// output is checked against LocalEngine: a call returns the right answer or a deadline error, never a
// wrong one.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "runtime/client/cluster_client.h"
#include "tests/integration/failover_util.h"

namespace moe::integration {
namespace {

class Failover : public ClusterTest {};

TEST_F(Failover, WorkerKilledMidStreamNeverGivesAWrongAnswer) {
  TestCluster& cluster = start_cluster(tiny_cluster(3, 1));
  const ClientPlacement before = cluster.wait_ready();
  const uint32_t victim = TestCluster::worker_id(before, cluster.worker_address(1));
  const auto jobs = reference_jobs(24);
  ClusterClient client(cluster.coordinator_address(), f32_client(3s));
  const ModelSpec spec = client.spec();
  ASSERT_FALSE(placed_without(before, victim, spec)) << "worker 1 should host experts before it is killed";

  std::atomic<bool> stop{false};
  std::atomic<int> calls{0}, good{0}, deadline_errors{0};
  std::mutex failures_mutex;
  std::vector<std::string> failures;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (size_t n = 0; !stop.load(); ++n) {
        const Job& job = jobs[(t * 5 + n) % jobs.size()];
        const CallResult r = run_call(client, job);
        ++calls;
        good += r.right;
        deadline_errors += r.deadline;
        if (!r.problem.empty()) {
          std::lock_guard lock(failures_mutex);
          failures.push_back("thread " + std::to_string(t) + ", layer " + std::to_string(job.layer) + ", " +
                             std::to_string(job.x.rows) + " tokens: " + r.problem);
        }
      }
    });
  }
  auto wait_until = [&](auto condition, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!condition() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
    return condition();
  };
  std::string error;
  try {
    EXPECT_TRUE(wait_until([&] { return good.load() >= 50; }, 10s)) << "the stream did not get going: " << good.load();
    cluster.kill_worker(1);
    const int calls_at_kill = calls.load();
    const ClientPlacement after = cluster.wait_for_placement(
        "a new epoch without worker " + std::to_string(victim),
        [&](const ClientPlacement& p) { return p.epoch() > before.epoch() && placed_without(p, victim, spec); }, 10s);
    const int good_at_new_epoch = good.load();
    EXPECT_TRUE(wait_until([&] { return good.load() >= good_at_new_epoch + 40; }, 15s))
        << "calls stopped succeeding after epoch " << after.epoch();
    EXPECT_GT(calls.load(), calls_at_kill) << "no call ran while the worker was gone";
  } catch (const std::exception& e) {
    error = e.what();
  }
  stop = true;
  for (auto& t : threads) t.join();
  ASSERT_TRUE(error.empty()) << error;
  EXPECT_TRUE(failures.empty()) << failures.size() << " bad calls of " << calls.load() << ", first: " << failures.front();
  EXPECT_GE(client.stats().retries, 1u) << "the kill should have hit calls that planned on worker " << victim;
  std::cout << calls.load() << " calls: " << good.load() << " right, " << deadline_errors.load()
            << " deadline errors, " << client.stats().retries << " shard retries\n";

  // The coordinator shows the killed worker as not active, the others active.
  const ClusterStatus status = cluster.wait_for_status(
      "worker " + std::to_string(victim) + " shown dead or gone",
      [&](const ClusterStatus& s) {
        const StatusWorker* w = s.find(cluster.worker_address(1));
        return w == nullptr || w->state == wire::WorkerState::DEAD;
      },
      5s);
  for (size_t i : {0u, 2u}) {
    const StatusWorker* w = status.find(cluster.worker_address(i));
    ASSERT_NE(w, nullptr) << "worker " << i << " missing from status";
    EXPECT_EQ(w->state, wire::WorkerState::ACTIVE) << "worker " << i;
    EXPECT_GT(w->hosted, 0u) << "worker " << i;
  }
  // Afterwards every call succeeds.
  for (const Job& job : jobs) EXPECT_EQ(expect_right(client, job), "") << "after the failover";
}

TEST_F(Failover, CoordinatorRestartKeepsServingAndContinuesTheEpoch) {
  TestClusterOptions options = tiny_cluster(3, 1);
  options.state_file = true;
  TestCluster& cluster = start_cluster(options);
  const ClientPlacement first = cluster.wait_ready();
  // Move past epoch 1 first, so that a coordinator that forgot its state would show.
  cluster.kill_worker(2);
  const uint32_t gone = TestCluster::worker_id(first, cluster.worker_address(2));
  const auto jobs = reference_jobs(12);
  ClusterClient probe(cluster.coordinator_address(), f32_client(5s));
  const ModelSpec spec = probe.spec();
  const ClientPlacement saved = cluster.wait_for_placement(
      "the epoch after worker 2 died",
      [&](const ClientPlacement& p) { return p.epoch() > first.epoch() && placed_without(p, gone, spec); }, 10s);
  ASSERT_GE(saved.epoch(), 2u);
  const uint32_t id0 = TestCluster::worker_id(saved, cluster.worker_address(0));
  const uint32_t id1 = TestCluster::worker_id(saved, cluster.worker_address(1));
  std::this_thread::sleep_for(past_grace());  // past the grace: the change is complete
  ASSERT_TRUE(std::filesystem::exists(cluster.state_file())) << cluster.state_file();

  ClusterClient client(cluster.coordinator_address(), f32_client(5s));
  ASSERT_EQ(client.placement()->epoch(), saved.epoch());
  for (const Job& job : jobs) ASSERT_EQ(expect_right(client, job), "") << "before the restart";

  cluster.kill_coordinator();
  // Outage longer than a lease: the workers keep serving the last epoch to clients that have it.
  const auto outage_end = std::chrono::steady_clock::now() + 1500ms;
  int outage_calls = 0;
  while (std::chrono::steady_clock::now() < outage_end) {
    const Job& job = jobs[outage_calls++ % jobs.size()];
    ASSERT_EQ(expect_right(client, job), "") << "during the outage, call " << outage_calls;
  }
  EXPECT_EQ(client.placement()->epoch(), saved.epoch());
  EXPECT_GE(outage_calls, 5);

  cluster.start_coordinator();
  const ClusterStatus status = cluster.wait_for_status(
      "workers 0 and 1 re-registered and active",
      [&](const ClusterStatus& s) {
        for (size_t i : {0u, 1u}) {
          const StatusWorker* w = s.find(cluster.worker_address(i));
          if (w == nullptr || w->state != wire::WorkerState::ACTIVE) return false;
        }
        return true;
      },
      10s);
  EXPECT_GE(status.epoch, saved.epoch()) << "the restarted coordinator went back from the saved epoch";
  EXPECT_EQ(status.find(cluster.worker_address(0))->id, id0) << "worker 0 should keep its id";
  EXPECT_EQ(status.find(cluster.worker_address(1))->id, id1) << "worker 1 should keep its id";
  const ClientPlacement restarted = cluster.wait_for_placement(
      "a placement served after the restart", [](const ClientPlacement& p) { return p.epoch() >= 1; }, 5s);
  EXPECT_GE(restarted.epoch(), saved.epoch());

  for (const Job& job : jobs) EXPECT_EQ(expect_right(client, job), "") << "old client after the restart";
  ClusterClient fresh(cluster.coordinator_address(), f32_client(5s));
  for (const Job& job : jobs) EXPECT_EQ(expect_right(fresh, job), "") << "new client after the restart";

  // The next placement change continues from the saved epoch.
  const uint32_t id_victim = TestCluster::worker_id(restarted, cluster.worker_address(1));
  cluster.kill_worker(1);
  const ClientPlacement next = cluster.wait_for_placement(
      "a new epoch after worker 1 died (post restart)",
      [&](const ClientPlacement& p) { return p.epoch() > restarted.epoch() && placed_without(p, id_victim, spec); },
      10s);
  EXPECT_GT(next.epoch(), saved.epoch());
  for (const Job& job : jobs) EXPECT_EQ(expect_right(client, job), "") << "on the last worker";
}

TEST_F(Failover, ClientWithAStaleEpochGetsTheNewPlacementTransparently) {
  TestCluster& cluster = start_cluster(tiny_cluster(3, 2));
  const ClientPlacement before = cluster.wait_ready();
  const auto jobs = reference_jobs(8);
  ClusterClient client(cluster.coordinator_address(), f32_client(5s));
  const ModelSpec spec = client.spec();
  ASSERT_EQ(expect_right(client, jobs[0]), "");
  ASSERT_EQ(client.placement()->epoch(), before.epoch());

  const uint32_t victim = TestCluster::worker_id(before, cluster.worker_address(0));
  cluster.kill_worker(0);
  const ClientPlacement after = cluster.wait_for_placement(
      "a new epoch without worker " + std::to_string(victim),
      [&](const ClientPlacement& p) { return p.epoch() > before.epoch() && placed_without(p, victim, spec); }, 10s);
  std::this_thread::sleep_for(past_grace());  // past the grace: the old epoch is released
  ASSERT_EQ(client.placement()->epoch(), before.epoch()) << "the client should still hold the old epoch";

  for (const Job& job : jobs) EXPECT_EQ(expect_right(client, job), "") << "stale client";
  EXPECT_GE(client.placement()->epoch(), after.epoch()) << "the client should have fetched the new placement";
}

}  // namespace
}  // namespace moe::integration
