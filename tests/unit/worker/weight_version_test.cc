// A worker's weight versions (update-weights) in-process: a prepare naming a new version loads it beside
// the served one, a forward request computes with the version it names (the reply says which), the
// commit switches the served version (and its metric), the release drops the old one; a release that drops
// unfinished prepares forgets a version that failed; a worker whose memory cannot hold both refuses.
#include <gtest/gtest.h>

#include <prometheus/registry.h>

#include "tests/unit/worker/worker_harness.h"

namespace moe::test {
namespace {

double gauge(WorkerService& worker, const std::string& name) {
  for (const auto& family : worker.metrics_registry().Collect()) {
    if (family.name == name && !family.metric.empty()) return family.metric.front().gauge.value;
  }
  return -1;
}

std::set<ExpertKey> layer0(int32_t from, int32_t to) {
  std::set<ExpertKey> experts;
  for (int32_t e = from; e < to; ++e) experts.insert({0, e});
  return experts;
}

ForwardCall call_at(uint64_t epoch, uint64_t version, const ModelSpec& spec) {
  ForwardCall call;
  call.epoch = epoch;
  call.weight_version = version;
  call.x = random_hidden(3, spec.hidden_size, 11);
  call.assignments = {{0, 0, 0.75f}, {1, 3, 1.f}, {2, 1, 0.5f}, {2, 2, 0.5f}};
  return call;
}

uint64_t reply_version(const Frame& reply) {
  if (reply.envelope().which() != wire::Envelope::FORWARD_REPLY) return 0;
  return reply.envelope().getForwardReply().getWeightVersion();
}

TEST(WorkerWeightVersions, TwoVersionsSideBySideUntilTheRelease) {
  WorkerHarness h("synthetic:tiny:0");
  h.place(1, layer0(0, 4));
  EXPECT_EQ(h.worker->weight_version(), 1u);
  EXPECT_EQ(gauge(*h.worker, "moe_worker_weight_version"), 1.0);
  Reference old_model("synthetic:tiny:0");
  Reference new_model("synthetic:tiny:1");
  const ForwardCall v1 = call_at(1, 1, h.spec());
  const ForwardCall v2 = call_at(1, 2, h.spec());
  const Matrix want_old = old_model.compute(0, v1.x, v1.assignments);
  const Matrix want_new = new_model.compute(0, v2.x, v2.assignments);
  ASSERT_GT(max_relative_error(want_old, want_new), 0.1) << "the two versions must differ";

  EXPECT_EQ(error_code(h.forward(v2)), wire::ErrorCode::STALE_EPOCH) << "version 2 is not held yet";
  Frame ack = h.send_prepare(2, layer0(0, 4), {}, 2, "synthetic:tiny:1");
  ASSERT_EQ(ack.envelope().which(), wire::Envelope::PREPARE_ACK) << message_kind_name(ack.envelope());
  // Both versions answer, each entirely with its own weights, and say so.
  Frame r1 = h.forward(v1), r2 = h.forward(v2);
  EXPECT_LT(max_relative_error(forward_output(r1), want_old), 1e-5);
  EXPECT_LT(max_relative_error(forward_output(r2), want_new), 1e-5);
  EXPECT_EQ(reply_version(r1), 1u);
  EXPECT_EQ(reply_version(r2), 2u);
  EXPECT_EQ(h.worker->weight_version(), 1u) << "prepared, not committed";

  Frame committed = h.send_commit(2, layer0(0, 4), 2, "synthetic:tiny:1");
  ASSERT_EQ(committed.envelope().which(), wire::Envelope::ACK) << message_kind_name(committed.envelope());
  EXPECT_EQ(h.worker->weight_version(), 2u);
  EXPECT_EQ(gauge(*h.worker, "moe_worker_weight_version"), 2.0);
  ForwardCall unnamed = call_at(2, 0, h.spec());  // no version named: the served one
  EXPECT_LT(max_relative_error(forward_output(h.forward(unnamed)), want_new), 1e-5);
  EXPECT_EQ(reply_version(h.forward(v1)), 1u) << "grace: version 1 still answers";

  ASSERT_EQ(h.send_release(2).envelope().which(), wire::Envelope::ACK);
  ForwardCall v1_now = call_at(2, 1, h.spec());
  EXPECT_EQ(error_code(h.forward(v1_now)), wire::ErrorCode::STALE_EPOCH) << "version 1 is dropped";
  EXPECT_EQ(reply_version(h.forward(call_at(2, 2, h.spec()))), 2u);
  EXPECT_EQ(h.worker->hosted(), layer0(0, 4));
}

TEST(WorkerWeightVersions, AReleaseDroppingPreparesForgetsAFailedVersion) {
  WorkerHarness h("synthetic:tiny:0");
  h.place(1, layer0(0, 4));
  ASSERT_EQ(h.send_prepare(2, layer0(0, 4), {}, 2, "synthetic:tiny:1").envelope().which(), wire::Envelope::PREPARE_ACK);
  ASSERT_EQ(h.send_release(1, /*drop_prepared=*/true).envelope().which(), wire::Envelope::ACK);
  EXPECT_EQ(error_code(h.forward(call_at(1, 2, h.spec()))), wire::ErrorCode::STALE_EPOCH);
  // The next update reuses version 2 with another source: it is loaded from that one, not left over.
  ASSERT_EQ(h.send_prepare(2, layer0(0, 4), {}, 2, "synthetic:tiny:2").envelope().which(), wire::Envelope::PREPARE_ACK);
  const ForwardCall v2 = call_at(1, 2, h.spec());
  Reference newest("synthetic:tiny:2");
  EXPECT_LT(max_relative_error(forward_output(h.forward(v2)), newest.compute(0, v2.x, v2.assignments)), 1e-5);
}

TEST(WorkerWeightVersions, AWorkerWhoseMemoryCannotHoldBothRefuses) {
  uint64_t four_experts = 0;
  {
    WorkerHarness measure("synthetic:tiny:0");
    measure.place(1, layer0(0, 4));
    four_experts = static_cast<uint64_t>(gauge(*measure.worker, "moe_worker_weight_bytes"));
  }
  ASSERT_GT(four_experts, 0u);
  WorkerOptions options;
  options.memory_bytes = four_experts * 3 / 2;
  WorkerHarness h("synthetic:tiny:0", options);
  h.place(1, layer0(0, 4));
  Frame refused = h.send_prepare(2, layer0(0, 4), {}, 2, "synthetic:tiny:1");
  ASSERT_EQ(refused.envelope().which(), wire::Envelope::ERROR) << message_kind_name(refused.envelope());
  EXPECT_EQ(refused.envelope().getError().getCode(), wire::ErrorCode::OVERLOADED);
  const std::string message = refused.envelope().getError().getMessage().cStr();
  EXPECT_NE(message.find("--memory-bytes"), std::string::npos) << message;
  EXPECT_EQ(reply_version(h.forward(call_at(1, 1, h.spec()))), 1u) << "version 1 keeps serving";
}

}  // namespace
}  // namespace moe::test
