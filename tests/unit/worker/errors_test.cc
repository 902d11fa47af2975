// Every malformed or misplaced forward request gets its typed error (with the worker's epoch where it
// matters), is counted in moe_worker_errors_total, and the worker goes on serving correct requests.
#include <gtest/gtest.h>

#include "tests/unit/worker/worker_harness.h"

namespace moe::test {
namespace {

class WorkerErrors : public ::testing::Test {
 protected:
  WorkerErrors() : reference_("synthetic:tiny:0") {}

  void SetUp() override { h_.place(1, all_experts(h_.spec())); }

  // A correct request of `tokens` rows on layer 0, epoch 1.
  ForwardCall good_call(int64_t tokens = 4) {
    ForwardCall call;
    call.x = random_hidden(tokens, h_.spec().hidden_size, 9);
    want_ = reference_.forward(0, call.x, call.assignments);
    return call;
  }

  // The worker still answers a correct request correctly.
  void expect_still_serving() {
    ForwardCall call = good_call();
    EXPECT_LT(max_relative_error(forward_output(h_.forward(call)), want_), 1e-5);
  }

  Frame send_raw(const std::function<void(wire::ForwardRequest::Builder)>& break_it) {
    capnp::MallocMessageBuilder message;
    build_forward(message, good_call());
    break_it(message.getRoot<wire::Envelope>().getForwardRequest());
    return h_.call(h_.client(), message);
  }

  WorkerHarness h_;
  Reference reference_;
  Matrix want_;
};

TEST_F(WorkerErrors, StaleEpochAfterReleaseNamesTheCurrentEpoch) {
  h_.place(2, all_experts(h_.spec()));
  ForwardCall call = good_call();
  EXPECT_LT(max_relative_error(forward_output(h_.forward(call)), want_), 1e-5) << "epoch 1 is served during grace";
  ASSERT_EQ(h_.send_release(2).envelope().which(), wire::Envelope::ACK);
  uint64_t current = 0;
  Frame reply = h_.forward(call);
  EXPECT_EQ(error_code(reply, &current), wire::ErrorCode::STALE_EPOCH);
  EXPECT_EQ(current, 2u);
  call.epoch = 2;
  EXPECT_LT(max_relative_error(forward_output(h_.forward(call)), want_), 1e-5);
}

TEST_F(WorkerErrors, ExpertNotHosted) {
  std::set<ExpertKey> half;
  for (int32_t e = 0; e < 4; ++e) half.insert({0, e});
  h_.place(2, half);
  ASSERT_EQ(h_.send_release(2).envelope().which(), wire::Envelope::ACK);
  ForwardCall call;
  call.epoch = 2;
  call.x = random_hidden(2, h_.spec().hidden_size, 1);
  call.assignments = {{0, 1, 0.5f}, {1, 5, 0.5f}};
  uint64_t current = 0;
  Frame reply = h_.forward(call);
  EXPECT_EQ(error_code(reply, &current), wire::ErrorCode::EXPERT_NOT_HOSTED);
  EXPECT_NE(error_message(reply).find("expert 5 of layer 0"), std::string::npos) << error_message(reply);
  EXPECT_EQ(current, 2u);
}

TEST_F(WorkerErrors, WrongHiddenSize) {
  ForwardCall call = good_call();
  call.x = random_hidden(4, 32, 1);
  Frame reply = h_.forward(call);
  EXPECT_EQ(error_code(reply), wire::ErrorCode::BAD_REQUEST);
  EXPECT_NE(error_message(reply).find("hidden"), std::string::npos) << error_message(reply);
  expect_still_serving();
}

TEST_F(WorkerErrors, TokensBlobOfTheWrongSize) {
  Frame reply = send_raw([](wire::ForwardRequest::Builder r) { r.setNumTokens(r.getNumTokens() + 1); });
  EXPECT_EQ(error_code(reply), wire::ErrorCode::BAD_REQUEST);
  EXPECT_NE(error_message(reply).find("tokens has"), std::string::npos) << error_message(reply);
  reply = send_raw([](wire::ForwardRequest::Builder r) { r.setDtype(wire::DType::BF16); });
  EXPECT_EQ(error_code(reply), wire::ErrorCode::BAD_REQUEST) << "an f32 blob announced as bf16 is twice too big";
  expect_still_serving();
}

TEST_F(WorkerErrors, ParallelListsOfDifferentLengths) {
  Frame reply = send_raw([](wire::ForwardRequest::Builder r) { r.initWeight(r.getTokenIndex().size() - 1); });
  EXPECT_EQ(error_code(reply), wire::ErrorCode::BAD_REQUEST);
  EXPECT_NE(error_message(reply).find("lists differ"), std::string::npos) << error_message(reply);
  reply = send_raw([](wire::ForwardRequest::Builder r) { r.initExpertId(0); });
  EXPECT_EQ(error_code(reply), wire::ErrorCode::BAD_REQUEST);
  expect_still_serving();
}

TEST_F(WorkerErrors, TokenIndexAndExpertIdOutOfRange) {
  Frame reply = send_raw([](wire::ForwardRequest::Builder r) { r.getTokenIndex().set(0, 4); });
  EXPECT_EQ(error_code(reply), wire::ErrorCode::BAD_REQUEST);
  reply = send_raw([](wire::ForwardRequest::Builder r) { r.getTokenIndex().set(0, -1); });
  EXPECT_EQ(error_code(reply), wire::ErrorCode::BAD_REQUEST);
  reply = send_raw([](wire::ForwardRequest::Builder r) { r.getExpertId().set(0, 8); });
  EXPECT_EQ(error_code(reply), wire::ErrorCode::BAD_REQUEST);
  expect_still_serving();
}

TEST_F(WorkerErrors, UnknownLayer) {
  Frame reply = send_raw([](wire::ForwardRequest::Builder r) { r.setLayer(5); });
  EXPECT_EQ(error_code(reply), wire::ErrorCode::UNKNOWN_LAYER);
  EXPECT_NE(error_message(reply).find("layer 5"), std::string::npos) << error_message(reply);
  reply = send_raw([](wire::ForwardRequest::Builder r) { r.setLayer(-1); });
  EXPECT_EQ(error_code(reply), wire::ErrorCode::UNKNOWN_LAYER);
  expect_still_serving();
}

TEST_F(WorkerErrors, RequestsTheWorkerDoesNotServe) {
  capnp::MallocMessageBuilder message;
  message.initRoot<wire::Envelope>().setStatus();
  Frame reply = h_.call(h_.client(), message);
  EXPECT_EQ(error_code(reply), wire::ErrorCode::BAD_REQUEST);
  EXPECT_NE(error_message(reply).find("status"), std::string::npos) << error_message(reply);
}

TEST_F(WorkerErrors, ErrorsAreCountedByCode) {
  send_raw([](wire::ForwardRequest::Builder r) { r.setLayer(5); });
  send_raw([](wire::ForwardRequest::Builder r) { r.setLayer(6); });
  send_raw([](wire::ForwardRequest::Builder r) { r.setHidden(3); });
  double unknown_layer = 0, bad_request = 0;
  for (const auto& family : h_.worker->metrics_registry().Collect()) {
    if (family.name != "moe_worker_errors_total") continue;
    for (const auto& metric : family.metric) {
      for (const auto& label : metric.label) {
        if (label.name != "code") continue;
        if (label.value == "unknownLayer") unknown_layer = metric.counter.value;
        if (label.value == "badRequest") bad_request = metric.counter.value;
      }
    }
  }
  EXPECT_EQ(unknown_layer, 2.0);
  EXPECT_EQ(bad_request, 1.0);
}

TEST(WorkerErrorsDense, DenseLayerOfAMixedModelIsAnUnknownLayer) {
  WorkerHarness h("synthetic:tiny-deepseek:0");
  h.place(1, all_experts(h.spec()));
  ASSERT_FALSE(h.spec().is_moe_layer(0));
  ForwardCall call;
  call.layer = 0;
  call.x = random_hidden(2, h.spec().hidden_size, 1);
  call.assignments = {{0, 0, 1.f}};
  EXPECT_EQ(error_code(h.forward(call)), wire::ErrorCode::UNKNOWN_LAYER);
}

TEST(WorkerErrorsFresh, NothingHostedBeforeThePlacement) {
  WorkerHarness h;
  ForwardCall call;
  call.x = random_hidden(2, h.spec().hidden_size, 1);
  call.assignments = {{0, 0, 1.f}};
  EXPECT_EQ(error_code(h.forward(call)), wire::ErrorCode::EXPERT_NOT_HOSTED);
}

}  // namespace
}  // namespace moe::test
