// Failures: a worker that stops heartbeating expires and its experts move in epoch 2 (only its
// experts); a closed registration connection kills a worker before its lease ends; a gainer whose
// prepare fails is dropped and the plan made again; the state file is written and reloaded, with
// re-registration by address keeping ids and the epoch continuing at saved + 1.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "runtime/placement/placement_wire.h"
#include "tests/unit/coordinator/coordinator_test_util.h"

namespace moe {
namespace {

using namespace test;

struct TwoWorkers {
  explicit TwoWorkers(CoordinatorConfig config) : coordinator(config) {
    a.register_with(coordinator.address());
    b.register_with(coordinator.address());
    a.start_heartbeats(50ms);
    b.start_heartbeats(50ms);
  }
  CoordinatorService coordinator;
  TestWorker a, b;
};

CoordinatorConfig min2(CoordinatorConfig c) {
  c.min_workers = 2;
  return c;
}

TEST(CoordinatorFailure, ExpiredLeaseMovesOnlyTheDeadWorkersExpertsInEpoch2) {
  TwoWorkers cluster(min2(fast_config()));
  ASSERT_TRUE(eventually([&] { return cluster.coordinator.epoch() == 1; }));
  const PlacementTable before = cluster.coordinator.placement();
  const auto lost = before.experts_on(cluster.a.id());
  ASSERT_FALSE(lost.empty());

  cluster.a.stop_heartbeats();  // its connection stays open: only the lease can tell
  ASSERT_TRUE(eventually([&] { return cluster.coordinator.epoch() == 2; }, 3000ms));
  const PlacementTable after = cluster.coordinator.placement();
  EXPECT_EQ(after.find_worker(cluster.a.id()), nullptr);
  EXPECT_EQ(after.experts_on(cluster.b.id()).size(), 16u);
  // B was prepared with exactly A's experts, then committed and released in epoch 2.
  auto prepares = cluster.b.prepares();
  ASSERT_EQ(prepares.size(), 2u);
  EXPECT_EQ(prepares[1].epoch, 2u);
  EXPECT_EQ(prepares[1].load, lost);
  ASSERT_TRUE(eventually([&] { return cluster.b.commits().size() == 2; }));
  EXPECT_EQ(cluster.b.commits()[1], after);
  EXPECT_TRUE(eventually([&] { return cluster.b.releases().size() == 2 && cluster.b.releases()[1] == 2; }));
  // A hears it is unknown now.
  EXPECT_TRUE(cluster.a.heartbeat());
}

TEST(CoordinatorFailure, ClosedRegistrationConnectionKillsTheWorkerBeforeItsLease) {
  CoordinatorConfig config = min2(fast_config());
  config.lease_ms = 20000;
  TwoWorkers cluster(config);
  ASSERT_TRUE(eventually([&] { return cluster.coordinator.epoch() == 1; }));
  cluster.a.stop_heartbeats();
  cluster.a.close_coordinator_connection();
  ASSERT_TRUE(eventually([&] { return cluster.coordinator.epoch() == 2; }, 3000ms));
  EXPECT_EQ(cluster.coordinator.placement().experts_on(cluster.b.id()).size(), 16u);
}

TEST(CoordinatorFailure, FailedPrepareDropsTheGainerAndPlansAgain) {
  TwoWorkers cluster(min2(fast_config()));
  ASSERT_TRUE(eventually([&] { return cluster.coordinator.epoch() == 1; }));
  TestWorker refusing;  // joins empty: the least loaded, so the first plan gives it A's experts
  refusing.fail_prepares();
  refusing.register_with(cluster.coordinator.address());
  refusing.start_heartbeats(50ms);
  std::this_thread::sleep_for(100ms);

  cluster.a.stop_heartbeats();
  cluster.a.close_coordinator_connection();
  ASSERT_TRUE(eventually([&] { return cluster.coordinator.epoch() == 2; }, 3000ms));
  ASSERT_EQ(refusing.prepares().size(), 1u);
  EXPECT_EQ(refusing.prepares()[0].epoch, 2u);
  const PlacementTable after = cluster.coordinator.placement();
  EXPECT_EQ(after.experts_on(cluster.b.id()).size(), 16u);
  EXPECT_EQ(after.find_worker(refusing.id()), nullptr);
  EXPECT_TRUE(refusing.heartbeat()) << "a worker whose prepare failed should be dead, asked to register again";
}

TEST(CoordinatorFailure, StateFileIsWrittenAndReloadedWithIdsKeptAndEpochContinuing) {
  const std::string path = testing::TempDir() + "coordinator_state_test.json";
  std::filesystem::remove(path);
  CoordinatorConfig config = min2(fast_config());
  config.state_file = path;
  TestWorker a, b;
  PlacementTable saved;
  uint16_t port = 0;
  {
    CoordinatorService first(config);
    port = first.port();
    a.register_with(first.address());
    b.register_with(first.address());
    a.start_heartbeats(50ms);
    b.start_heartbeats(50ms);
    ASSERT_TRUE(eventually([&] { return first.epoch() == 1; }));
    saved = first.placement();
    a.stop_heartbeats();
    b.stop_heartbeats();
  }
  {
    std::ifstream in(path);
    ASSERT_TRUE(in) << path;
    nlohmann::json json = nlohmann::json::parse(in);
    EXPECT_EQ(json["placement"]["epoch"], 1);
    EXPECT_EQ(json["workers"].size(), 2u);
    EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  }
  const uint32_t a_id = a.id(), b_id = b.id();
  config.listen = "127.0.0.1:" + std::to_string(port);
  config.lease_ms = 600;
  CoordinatorService second(config);
  // The saved placement is served at once; A registers again (same address) and keeps its id.
  Client client(second.address());
  Frame reply = client.get_placement();
  ASSERT_EQ(reply.envelope().which(), wire::Envelope::PLACEMENT);
  EXPECT_EQ(placement_from_wire(reply.envelope().getPlacement()), saved);
  a.connect(second.address());
  EXPECT_TRUE(a.heartbeat()) << "an unconfirmed worker is asked to register again";
  a.register_with(second.address());
  EXPECT_EQ(a.id(), a_id);
  a.start_heartbeats(50ms);
  // B never comes back: after a lease, its experts go to A in epoch saved + 1.
  ASSERT_TRUE(eventually([&] { return second.epoch() == 2; }, 3000ms));
  const PlacementTable after = second.placement();
  EXPECT_EQ(after.find_worker(b_id), nullptr);
  EXPECT_EQ(after.experts_on(a_id).size(), 16u);
  ASSERT_TRUE(eventually([&] {
    std::ifstream in(path);
    return nlohmann::json::parse(in)["placement"]["epoch"] == 2;
  }));
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace moe
