// SIGTERM is answered promptly in every phase of both daemons (issue 12, part 3): each test brings a
// real process into one phase, sends SIGTERM and requires a clean exit (status 0) within kStopBound.
// Coordinator: serving; waiting to adopt the placement the workers report after a restart (a worker
// is missing, --adopt-wait-ms long); in the middle of a drain whose prepare waits on a stopped worker.
// Worker: starting with no coordinator to register with; serving; serving while its coordinator is
// gone; being drained while the drain's prepare hangs. (The coordinator's start, with a state file
// that never finishes loading, is in authorization_test.cc.)
#include <gtest/gtest.h>

#include <csignal>
#include <thread>

#include "runtime/client/local_cluster.h"
#include "tests/integration/integration_util.h"

namespace moe::integration {
namespace {

using Clock = std::chrono::steady_clock;
// "Within a second", plus room for a loaded test machine to schedule the exit.
constexpr auto kStopBound = 2000ms;

// SIGTERM to `daemon`; expects exit status 0 within kStopBound and prints how long it took.
void expect_prompt_stop(DaemonProcess& daemon, const std::string& phase) {
  const auto sent = Clock::now();
  daemon.kill(SIGTERM);
  const bool exited = daemon.wait_exit(kStopBound);
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - sent).count();
  std::cout << phase << ": " << (exited ? "exited " + daemon.exit_status() : std::string("still running")) << " "
            << took << " ms after SIGTERM\n";
  const std::string log = daemon.log_tail(15);
  if (!exited) daemon.kill_now();
  ASSERT_TRUE(exited) << phase << ": SIGTERM not answered within " << kStopBound.count() << " ms\n" << log;
  EXPECT_EQ(daemon.exit_status(), "exit 0") << phase << "\n" << log;
}

class StopSignal : public ClusterTest {
 protected:
  // lease_ms: long for the drain tests, so a stopped worker stays listed and its prepare hangs.
  TestCluster& two_workers(std::vector<std::string> coordinator_flags = {}, uint32_t lease_ms = 600) {
    TestClusterOptions options;
    options.model_flags = tiny_model_flags();
    options.workers = 2;
    options.lease_ms = lease_ms;
    options.coordinator_flags = std::move(coordinator_flags);
    TestCluster& cluster = start_cluster(options);
    cluster.wait_ready();
    return cluster;
  }

  // Starts `moectl drain` of worker 0 with worker 1 stopped (SIGSTOP), and waits until the coordinator
  // is preparing the drain's epoch: its prepare to worker 1 now waits (--prepare-timeout-ms, 60 s).
  std::unique_ptr<DaemonProcess> drain_hanging_on_a_stopped_worker(TestCluster& cluster) {
    const ClientPlacement placement = *cluster.placement();
    const uint32_t drained = TestCluster::worker_id(placement, cluster.worker_address(0));
    // The first placement's release must be done first: the control thread would be busy releasing on
    // the stopped worker, and the drain refused as notReady.
    cluster.coordinator().wait_for_log_line("epoch " + std::to_string(placement.epoch()) + " released", 20s);
    cluster.worker(1).kill(SIGSTOP);
    auto drain = std::make_unique<DaemonProcess>(
        std::vector<std::string>{bin_path("moectl"), "drain", "--cluster", cluster.coordinator_address(),
                                 std::to_string(drained)},
        cluster.dir() / "moectl-drain.log");
    cluster.coordinator().wait_for_log_line("is draining", 20s);
    cluster.coordinator().wait_for_log_line("epoch " + std::to_string(placement.epoch() + 1) + ": ", 20s);
    return drain;
  }
};

TEST_F(StopSignal, CoordinatorServing) {
  TestCluster& cluster = two_workers();
  expect_prompt_stop(cluster.coordinator(), "coordinator serving");
}

TEST_F(StopSignal, CoordinatorWaitingToAdoptTheWorkersPlacement) {
  TestCluster& cluster = two_workers({"--adopt-wait-ms", "60000"});
  cluster.kill_coordinator();  // first: else it moves worker 1's experts to worker 0 at once
  cluster.kill_worker(1);
  cluster.start_coordinator();
  // Worker 0 registers again with its experts; worker 1's are missing, so the coordinator waits for
  // reports that cover the model (up to 60 s) before it adopts.
  const ClusterStatus status = cluster.wait_for_status(
      "worker 0 registered again", [](const ClusterStatus& s) { return s.workers.size() == 1; }, 20s);
  EXPECT_EQ(status.epoch, 0u) << "the coordinator adopted already: not the phase under test";
  expect_prompt_stop(cluster.coordinator(), "coordinator waiting to adopt");
}

TEST_F(StopSignal, CoordinatorDuringADrainWhosePrepareHangs) {
  TestCluster& cluster = two_workers({}, 30000);
  auto drain = drain_hanging_on_a_stopped_worker(cluster);
  expect_prompt_stop(cluster.coordinator(), "coordinator draining");
  cluster.worker(1).kill(SIGCONT);
  drain->wait_exit(10s);
}

TEST_F(StopSignal, WorkerStartingWithNoCoordinator) {
  const auto dir = scratch_dir("stop_signal_worker_start");
  // Nothing listens there: the worker keeps retrying its registration.
  DaemonProcess worker({bin_path("moe-worker"), "--coordinator", "127.0.0.1:" + std::to_string(pick_free_port()),
                        "--listen", "127.0.0.1:0", "--threads", "1"},
                       dir / "moe-worker.log");
  worker.wait_for_log_line("moe-worker listening on", 20s);
  expect_prompt_stop(worker, "worker starting, coordinator unreachable");
}

TEST_F(StopSignal, WorkerServing) {
  TestCluster& cluster = two_workers();
  expect_prompt_stop(cluster.worker(0), "worker serving");
}

TEST_F(StopSignal, WorkerServingWhileItsCoordinatorIsGone) {
  TestCluster& cluster = two_workers();
  cluster.kill_coordinator();
  cluster.worker(0).wait_for_log_line("still serving the last epoch, retrying", 10s);
  expect_prompt_stop(cluster.worker(0), "worker without its coordinator");
}

TEST_F(StopSignal, WorkerBeingDrainedWhileTheDrainsPrepareHangs) {
  TestCluster& cluster = two_workers({}, 30000);
  auto drain = drain_hanging_on_a_stopped_worker(cluster);
  expect_prompt_stop(cluster.worker(0), "worker being drained");
  cluster.worker(1).kill(SIGCONT);
  drain->wait_exit(10s);
}

}  // namespace
}  // namespace moe::integration
