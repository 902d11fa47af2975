// The placement change protocol on a live worker: prepare loads only what it is asked, commit adopts the
// epoch and keeps the previous one served (grace), release unloads what the worker lost; registration
// details, heartbeats, re-registration, and a coordinator that starts late or goes away.
#include <gtest/gtest.h>

#include "tests/unit/worker/worker_harness.h"

namespace moe::test {
namespace {

std::set<ExpertKey> layer0_experts(int32_t from, int32_t to) {
  std::set<ExpertKey> experts;
  for (int32_t e = from; e < to; ++e) experts.insert({0, e});
  return experts;
}

TEST(WorkerPlacement, RegistrationCarriesTheBoundAddressAndCapacity) {
  WorkerOptions options;
  options.cluster_token = "secret";
  options.transport.allow_cleartext_token = true;  // loopback test without TLS
  options.slots = 5;
  WorkerHarness h("synthetic:tiny:0", options);
  auto registration = h.coordinator.registrations().front();
  EXPECT_EQ(registration.address, h.worker->address());
  EXPECT_EQ(registration.address.rfind("127.0.0.1:", 0), 0u);
  EXPECT_NE(registration.address, "127.0.0.1:0");
  EXPECT_EQ(registration.name, "test-worker");
  EXPECT_EQ(registration.backend, "cpu");
  EXPECT_EQ(registration.cluster_token, "secret");
  EXPECT_EQ(registration.slots, 5u);
  EXPECT_GT(registration.memory_bytes, 0u);
  EXPECT_EQ(registration.serving_epoch, 0u);
  EXPECT_TRUE(registration.hosted.empty());
  EXPECT_EQ(h.worker->worker_id(), FakeCoordinator::kWorkerId);
}

TEST(WorkerPlacement, ControlRequestsNeedTheClusterTokenWhenTheWorkerHasOne) {
  WorkerOptions options;
  options.cluster_token = "secret";
  options.transport.allow_cleartext_token = true;  // loopback test without TLS
  WorkerHarness h("synthetic:tiny:0", options);
  h.place(1, layer0_experts(0, 2));  // the harness sends the right token
  EXPECT_EQ(h.worker->current_epoch(), 1u);
  for (const std::string& token : {std::string(), std::string("wrong")}) {
    h.control_token = token;
    EXPECT_EQ(error_code(h.send_prepare(2, layer0_experts(2, 4))), wire::ErrorCode::UNAUTHORIZED) << token;
    EXPECT_EQ(error_code(h.send_commit(2, layer0_experts(2, 4))), wire::ErrorCode::UNAUTHORIZED) << token;
    EXPECT_EQ(error_code(h.send_release(1)), wire::ErrorCode::UNAUTHORIZED) << token;
  }
  EXPECT_EQ(h.worker->current_epoch(), 1u);
  EXPECT_EQ(h.worker->hosted(), layer0_experts(0, 2));
}

TEST(WorkerPlacement, PrepareLoadsOnlyTheExpertsAskedAndServesThemBeforeCommit) {
  WorkerHarness h;
  Reference reference("synthetic:tiny:0");
  Frame ack = h.send_prepare(1, {{0, 0}, {0, 3}});
  ASSERT_EQ(ack.envelope().which(), wire::Envelope::PREPARE_ACK);
  EXPECT_EQ(ack.envelope().getPrepareAck().getLoaded().size(), 2u);
  EXPECT_GT(ack.envelope().getPrepareAck().getMemoryUsedBytes(), 0u);
  EXPECT_EQ(h.worker->hosted(), (std::set<ExpertKey>{{0, 0}, {0, 3}}));
  EXPECT_EQ(h.worker->current_epoch(), 0u);

  // A client that saw the commit before this worker did.
  ForwardCall call;
  call.x = random_hidden(3, h.spec().hidden_size, 4);
  call.assignments = {{0, 3, 0.75f}, {2, 0, 0.25f}, {2, 3, 1.f}};
  Matrix want = reference.compute(0, call.x, call.assignments);
  EXPECT_LT(max_relative_error(forward_output(h.forward(call)), want), 1e-5);
}

TEST(WorkerPlacement, PrepareChecksExpertsAndEpochs) {
  WorkerHarness h;
  EXPECT_EQ(error_code(h.send_prepare(1, {{7, 0}})), wire::ErrorCode::UNKNOWN_LAYER);
  EXPECT_EQ(error_code(h.send_prepare(1, {{0, 8}})), wire::ErrorCode::BAD_REQUEST);
  EXPECT_TRUE(h.worker->hosted().empty());
  h.place(3, layer0_experts(0, 2));
  uint64_t current = 0;
  EXPECT_EQ(error_code(h.send_prepare(2, layer0_experts(0, 8)), &current), wire::ErrorCode::STALE_EPOCH);
  EXPECT_EQ(current, 3u);
  EXPECT_EQ(error_code(h.send_commit(2, layer0_experts(0, 2))), wire::ErrorCode::STALE_EPOCH);
  EXPECT_EQ(error_code(h.send_release(4)), wire::ErrorCode::BAD_REQUEST);
}

TEST(WorkerPlacement, GraceKeepsTheOldEpochUntilReleaseUnloadsWhatWasLost) {
  WorkerHarness h;
  Reference reference("synthetic:tiny:0");
  h.place(1, layer0_experts(0, 8));
  h.place(2, layer0_experts(0, 4));  // loses experts 4..7 of layer 0
  EXPECT_EQ(h.worker->current_epoch(), 2u);
  EXPECT_EQ(h.worker->oldest_served_epoch(), 1u);
  EXPECT_EQ(h.worker->hosted().size(), 8u);

  ForwardCall old_plan;
  old_plan.epoch = 1;
  old_plan.x = random_hidden(2, h.spec().hidden_size, 5);
  old_plan.assignments = {{0, 6, 1.f}, {1, 2, 0.5f}};
  Matrix want = reference.compute(0, old_plan.x, old_plan.assignments);
  EXPECT_LT(max_relative_error(forward_output(h.forward(old_plan)), want), 1e-5) << "grace serves epoch 1";

  Frame ack = h.send_release(2);
  ASSERT_EQ(ack.envelope().which(), wire::Envelope::ACK);
  EXPECT_EQ(ack.envelope().getAck().getEpoch(), 2u);
  EXPECT_EQ(h.worker->hosted(), layer0_experts(0, 4));
  EXPECT_EQ(h.worker->oldest_served_epoch(), 2u);
  EXPECT_EQ(error_code(h.forward(old_plan)), wire::ErrorCode::STALE_EPOCH);
  old_plan.epoch = 2;
  EXPECT_EQ(error_code(h.forward(old_plan)), wire::ErrorCode::EXPERT_NOT_HOSTED);
  ForwardCall new_plan;
  new_plan.epoch = 2;
  new_plan.x = old_plan.x;
  new_plan.assignments = {{0, 3, 1.f}, {1, 2, 0.5f}};
  want = reference.compute(0, new_plan.x, new_plan.assignments);
  EXPECT_LT(max_relative_error(forward_output(h.forward(new_plan)), want), 1e-5);
}

TEST(WorkerPlacement, ReleaseKeepsExpertsPreparedForTheNextEpoch) {
  WorkerHarness h;
  h.place(1, layer0_experts(0, 2));
  h.place(2, layer0_experts(2, 4));
  ASSERT_EQ(h.send_prepare(3, layer0_experts(0, 1)).envelope().which(), wire::Envelope::PREPARE_ACK);
  ASSERT_EQ(h.send_release(2).envelope().which(), wire::Envelope::ACK);
  EXPECT_EQ(h.worker->hosted(), (std::set<ExpertKey>{{0, 0}, {0, 2}, {0, 3}}));
}

TEST(WorkerPlacement, CommitLoadsAssignedExpertsThatWereNotPrepared) {
  WorkerHarness h;
  Frame ack = h.send_commit(1, layer0_experts(0, 3));
  ASSERT_EQ(ack.envelope().which(), wire::Envelope::ACK) << message_kind_name(ack.envelope());
  EXPECT_EQ(h.worker->hosted(), layer0_experts(0, 3));
}

// The worker reads a commit through the coordinator's own placement model (placement_from_wire): one
// that breaks its invariants is refused whole, before anything is loaded or the epoch moves.
TEST(WorkerPlacement, ACommitThatBreaksThePlacementInvariantsIsRefusedWhole) {
  WorkerHarness h;
  auto on_unlisted_worker = [](wire::Placement::Builder p) { p.getAssignments()[1].getReplicas()[0].setWorkerId(42); };
  auto listed_twice = [](wire::Placement::Builder p) { p.getAssignments()[2].setExpert(p.getAssignments()[1].getExpert()); };
  for (const auto& tamper : {std::function<void(wire::Placement::Builder)>(on_unlisted_worker),
                             std::function<void(wire::Placement::Builder)>(listed_twice)}) {
    Frame refused = h.send_commit(1, layer0_experts(0, 3), 0, "", tamper);
    ASSERT_EQ(refused.envelope().which(), wire::Envelope::ERROR) << message_kind_name(refused.envelope());
    EXPECT_EQ(refused.envelope().getError().getCode(), wire::ErrorCode::BAD_REQUEST);
    EXPECT_NE(std::string(refused.envelope().getError().getMessage().cStr()).find("commit refused: placement of epoch 1"),
              std::string::npos)
        << refused.envelope().getError().getMessage().cStr();
    EXPECT_TRUE(h.worker->hosted().empty());
  }
  Frame ack = h.send_commit(1, layer0_experts(0, 3));
  ASSERT_EQ(ack.envelope().which(), wire::Envelope::ACK) << message_kind_name(ack.envelope());
  EXPECT_EQ(h.worker->hosted(), layer0_experts(0, 3));
}

TEST(WorkerPlacement, HeartbeatsCarryTheEpochAndReregistrationTheHostedExperts) {
  WorkerHarness h;
  h.place(1, layer0_experts(2, 5));
  EXPECT_TRUE(h.coordinator.wait_for([&] { return h.coordinator.last_heartbeat_epoch() == 1; }));
  h.coordinator.ask_reregister();
  ASSERT_TRUE(h.coordinator.wait_registrations(2));
  auto again = h.coordinator.registrations().back();
  EXPECT_EQ(again.serving_epoch, 1u);
  EXPECT_EQ(again.hosted, layer0_experts(2, 5));
  EXPECT_EQ(again.address, h.worker->address());
}

TEST(WorkerPlacement, KeepsServingWhenTheCoordinatorGoesAway) {
  WorkerHarness h;
  Reference reference("synthetic:tiny:0");
  h.place(1, layer0_experts(0, 8));
  h.coordinator.stop();
  EXPECT_TRUE(FakeCoordinator::wait_for([&] { return !h.worker->registered(); }));
  ForwardCall call;
  call.x = random_hidden(5, h.spec().hidden_size, 8);
  Matrix want = reference.forward(0, call.x, call.assignments);
  EXPECT_LT(max_relative_error(forward_output(h.forward(call)), want), 1e-5);
}

TEST(WorkerPlacement, ServesWhileTheCoordinatorIsNotUpAndRegistersOnceItIs) {
  IoPool pool(2);
  uint16_t port;
  {
    Server probe(pool.context(), "127.0.0.1", 0, [](Frame, Responder) {});
    port = probe.port();
  }
  WorkerOptions options;
  options.coordinator = "127.0.0.1:" + std::to_string(port);
  options.threads = 1;
  options.retry_min_ms = 20;
  options.retry_max_ms = 100;
  WorkerService worker(options);
  worker.start();
  auto client = Connection::connect(pool.context(), worker.address(), 2000ms);
  capnp::MallocMessageBuilder message;
  ForwardCall call;
  call.x = random_hidden(1, 64, 1);
  call.assignments = {{0, 0, 1.f}};
  build_forward(message, call);
  EXPECT_EQ(error_code(client->request(message, 5s).get()), wire::ErrorCode::NOT_READY);

  FakeCoordinator coordinator(pool.context(), "synthetic:tiny:0", port);
  EXPECT_TRUE(coordinator.wait_registrations(1));
  EXPECT_TRUE(FakeCoordinator::wait_for([&] { return worker.registered(); }));
  client->close();
  worker.stop();
}

}  // namespace
}  // namespace moe::test

namespace moe::test {
namespace {

// Text caps (runtime/wire/text_limits.h): a prepare's source address over 256 bytes is refused before
// anything changes.
TEST(WorkerPlacement, PrepareRefusesASourceAddressOverTheCap) {
  WorkerHarness h;
  const std::string long_address = "127.0.0.1:1" + std::string(300, '1');
  Frame reply = h.send_prepare(1, {{0, 0}}, {{{0, 0}, {long_address}}});
  ASSERT_EQ(reply.envelope().which(), wire::Envelope::ERROR);
  EXPECT_EQ(reply.envelope().getError().getCode(), wire::ErrorCode::BAD_REQUEST);
  EXPECT_NE(std::string(reply.envelope().getError().getMessage().cStr()).find("311 bytes, at most 256"), std::string::npos)
      << reply.envelope().getError().getMessage().cStr();
  EXPECT_TRUE(h.worker->hosted().empty());
  EXPECT_EQ(h.send_prepare(1, {{0, 0}}, {{{0, 0}, {"127.0.0.1:1"}}}).envelope().which(), wire::Envelope::PREPARE_ACK);
}

}  // namespace
}  // namespace moe::test
