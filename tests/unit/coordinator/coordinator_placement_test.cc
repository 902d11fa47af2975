// The first placement: nothing before --min-workers registered (notReady), then epoch 1 with every
// expert placed, the gainers prepared with exactly their experts, and the commit sent to every worker.
#include <gtest/gtest.h>

#include <set>

#include "runtime/placement/placement_wire.h"
#include "tests/unit/coordinator/coordinator_test_util.h"

namespace moe {
namespace {

using namespace test;

TEST(CoordinatorPlacement, FirstPlacementAfterMinWorkersPlacesEveryExpertInEpoch1) {
  CoordinatorConfig config = fast_config();
  config.min_workers = 2;
  CoordinatorService coordinator(config);
  Client client(coordinator.address());
  TestWorker a, b;
  a.register_with(coordinator.address());
  a.start_heartbeats(50ms);

  Frame early = client.get_placement();
  ASSERT_EQ(early.envelope().which(), wire::Envelope::ERROR);
  EXPECT_EQ(early.envelope().getError().getCode(), wire::ErrorCode::NOT_READY);
  // Two control rounds after the registration: the second began after it, so it saw worker a.
  const uint64_t rounds = coordinator.control_rounds();
  ASSERT_TRUE(eventually([&] { return coordinator.control_rounds() >= rounds + 2; }));
  EXPECT_EQ(coordinator.epoch(), 0u) << "placed before min-workers registered";

  b.register_with(coordinator.address());
  b.start_heartbeats(50ms);
  ASSERT_TRUE(eventually([&] { return coordinator.epoch() == 1; }));
  PlacementTable table = coordinator.placement();
  EXPECT_EQ(table.assignments.size(), 16u);
  for (int32_t layer = 0; layer < 2; ++layer) {
    for (int32_t expert = 0; expert < 8; ++expert) {
      ASSERT_EQ(table.assignments.count({layer, expert}), 1u) << layer << "/" << expert;
      ASSERT_EQ(table.assignments.at({layer, expert}).size(), 1u);
    }
  }
  EXPECT_EQ(table.experts_on(a.id()).size(), 8u);
  EXPECT_EQ(table.experts_on(b.id()).size(), 8u);

  // Each worker was prepared with exactly its experts, then told the same placement by commit.
  for (TestWorker* worker : {&a, &b}) {
    ASSERT_TRUE(eventually([&] { return !worker->commits().empty(); }));
    auto prepares = worker->prepares();
    ASSERT_EQ(prepares.size(), 1u);
    EXPECT_EQ(prepares[0].epoch, 1u);
    EXPECT_EQ(prepares[0].load, table.experts_on(worker->id()));
    EXPECT_EQ(worker->commits()[0], table);
  }
  // Clients get the same table; release follows after the grace.
  Frame reply = client.get_placement();
  ASSERT_EQ(reply.envelope().which(), wire::Envelope::PLACEMENT);
  EXPECT_EQ(placement_from_wire(reply.envelope().getPlacement()), table);
  EXPECT_TRUE(eventually([&] { return a.releases() == std::vector<uint64_t>{1}; }));
}

TEST(CoordinatorPlacement, ReplicasPutEveryExpertOnDistinctWorkers) {
  CoordinatorConfig config = fast_config();
  config.min_workers = 3;
  config.replicas = 2;
  CoordinatorService coordinator(config);
  TestWorker a, b, c;
  for (TestWorker* w : {&a, &b, &c}) {
    w->register_with(coordinator.address());
    w->start_heartbeats(50ms);
  }
  ASSERT_TRUE(eventually([&] { return coordinator.epoch() == 1; }));
  for (const auto& [key, replicas] : coordinator.placement().assignments) {
    ASSERT_EQ(replicas.size(), 2u);
    EXPECT_NE(replicas[0].worker_id, replicas[1].worker_id);
  }
}

TEST(CoordinatorPlacement, LateWorkerReceivesExpertsInTheNextEpoch) {
  CoordinatorService coordinator(fast_config());
  TestWorker a, late;
  a.register_with(coordinator.address());
  a.start_heartbeats(50ms);
  ASSERT_TRUE(eventually([&] { return coordinator.epoch() == 1; }));
  auto reply = late.register_with(coordinator.address());
  EXPECT_EQ(reply.getCurrentEpoch(), 1u);
  late.start_heartbeats(50ms);
  // Scale-out: the cluster rebalances onto the newcomer in a new epoch, nothing restarted.
  ASSERT_TRUE(eventually([&] { return coordinator.epoch() >= 2 && !coordinator.placement().experts_on(late.id()).empty(); }));
  EXPECT_FALSE(coordinator.placement().experts_on(a.id()).empty());
}

}  // namespace
}  // namespace moe
