// moectl rebalance / drain never wait on the control thread past --rpc-timeout-ms: while a placement change
// is stuck preparing (a gainer that does not answer), a queued dry-run rebalance and a drain get a
// `notReady` "cannot act within N ms: <why>" error in time, the drained worker keeps its state, and status
// answers throughout.
#include <gtest/gtest.h>

#include <chrono>

#include "tests/unit/coordinator/coordinator_test_util.h"

namespace moe {
namespace {

using namespace test;
using Clock = std::chrono::steady_clock;

// One control request with its own (generous) deadline; returns the reply and how long it took.
std::pair<Frame, Clock::duration> timed_request(Connection& connection,
                                                const std::function<void(wire::Envelope::Builder)>& fill) {
  capnp::MallocMessageBuilder message;
  fill(message.initRoot<wire::Envelope>());
  const auto start = Clock::now();
  Frame reply = connection.request(message, 4000ms).get();
  return {std::move(reply), Clock::now() - start};
}

TEST(CoordinatorControlDeadline, RebalanceAndDrainAnswerWithinTheRpcTimeoutWhileAChangeIsStuckPreparing) {
  CoordinatorConfig config = fast_config();
  config.min_workers = 2;
  config.rpc_timeout_ms = 300;
  config.prepare_timeout_ms = 3000;
  config.rebalance_threshold = 0;
  CoordinatorService coordinator(config);
  TestWorker a, b, c;
  for (TestWorker* worker : {&a, &b}) {
    worker->register_with(coordinator.address());
    worker->start_heartbeats(50ms);
  }
  ASSERT_TRUE(eventually([&] { return coordinator.epoch() == 1; }));
  ASSERT_TRUE(eventually([&] { return a.releases() == std::vector<uint64_t>{1}; }));

  c.stall_prepares();  // scale out onto c: its prepare hangs for the prepare timeout
  c.register_with(coordinator.address());
  c.start_heartbeats(50ms);
  ASSERT_TRUE(eventually([&] { return !c.prepares().empty(); }));

  IoPool pool{1};
  auto connection = Connection::connect(pool.context(), coordinator.address(), 2000ms);
  auto [rebalance, rebalance_took] = timed_request(*connection, [](wire::Envelope::Builder e) {
    e.initRebalance().setDryRun(true);
  });
  ASSERT_EQ(rebalance.envelope().which(), wire::Envelope::ERROR);
  EXPECT_EQ(rebalance.envelope().getError().getCode(), wire::ErrorCode::NOT_READY);
  const std::string rebalance_text = rebalance.envelope().getError().getMessage().cStr();
  EXPECT_NE(rebalance_text.find("rebalance: cannot act within 300 ms: epoch 2 is being prepared (scale out"),
            std::string::npos)
      << rebalance_text;
  EXPECT_LT(rebalance_took, 1500ms);

  const uint32_t drained = a.id();
  auto [drain, drain_took] = timed_request(*connection, [&](wire::Envelope::Builder e) {
    e.initDrain().setWorkerId(drained);
  });
  ASSERT_EQ(drain.envelope().which(), wire::Envelope::ERROR);
  const std::string drain_text = drain.envelope().getError().getMessage().cStr();
  EXPECT_NE(drain_text.find("drain of worker " + std::to_string(drained) + ": cannot act within 300 ms"),
            std::string::npos)
      << drain_text;
  EXPECT_LT(drain_took, 1500ms);

  auto [status, status_took] = timed_request(*connection, [](wire::Envelope::Builder e) { e.setStatus(); });
  ASSERT_EQ(status.envelope().which(), wire::Envelope::STATUS_REPLY);
  bool a_draining = false;
  for (auto worker : status.envelope().getStatusReply().getWorkers()) {
    a_draining |= worker.getInfo().getId() == drained && worker.getInfo().getState() == wire::WorkerState::DRAINING;
  }
  EXPECT_FALSE(a_draining) << "a refused drain left the worker draining";
  EXPECT_LT(status_took, 1500ms);
  connection->close();
  pool.stop();
}

}  // namespace
}  // namespace moe
