// Forward requests through a real worker (in-process, real sockets) against LocalEngine on the same
// model: f32 and bf16, a model with a shared expert, and concurrent requests from several connections
// that the worker batches into shared backend calls.
#include <gtest/gtest.h>

#include <prometheus/registry.h>

#include <future>
#include <thread>

#include "tests/unit/worker/worker_harness.h"

namespace moe::test {
namespace {

double metric_value(prometheus::Registry& registry, const std::string& name,
                    const std::map<std::string, std::string>& labels = {}) {
  for (const auto& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const auto& metric : family.metric) {
      bool match = true;
      for (const auto& [key, value] : labels) {
        bool found = false;
        for (const auto& label : metric.label) found |= label.name == key && label.value == value;
        match &= found;
      }
      if (!match) continue;
      switch (family.type) {
        case prometheus::MetricType::Counter: return metric.counter.value;
        case prometheus::MetricType::Gauge: return metric.gauge.value;
        case prometheus::MetricType::Histogram: return static_cast<double>(metric.histogram.sample_count);
        default: return -1;
      }
    }
  }
  return 0;
}

TEST(WorkerForward, RoutedTokensMatchLocalEngineInF32) {
  WorkerHarness h;
  Reference reference("synthetic:tiny:0");
  h.place(1, all_experts(h.spec()));
  for (int32_t layer : h.spec().moe_layers) {
    ForwardCall call;
    call.layer = layer;
    call.x = random_hidden(16, h.spec().hidden_size, 100 + layer);
    Matrix want = reference.forward(layer, call.x, call.assignments);
    Frame reply = h.forward(call);
    auto r = reply.envelope().getForwardReply();
    Matrix got = forward_output(reply);
    EXPECT_EQ(r.getDtype(), wire::DType::F32);
    EXPECT_EQ(r.getNumTokens(), 16u);
    EXPECT_LT(max_relative_error(got, want), 1e-5) << "layer " << layer;
  }
}

// A worker started with --cluster-token computes only for clients that send it.
TEST(WorkerForward, NeedsTheClusterTokenWhenTheWorkerHasOne) {
  WorkerOptions options;
  options.cluster_token = "secret";
  options.transport.allow_cleartext_token = true;  // loopback test without TLS
  WorkerHarness h("synthetic:tiny:0", options);
  Reference reference("synthetic:tiny:0");
  h.place(1, all_experts(h.spec()));
  ForwardCall call;
  call.layer = h.spec().moe_layers.front();
  call.x = random_hidden(4, h.spec().hidden_size, 7);
  Matrix want = reference.forward(call.layer, call.x, call.assignments);
  for (const std::string& token : {std::string(), std::string("wrong")}) {
    call.cluster_token = token;
    Frame refused = h.forward(call);
    EXPECT_EQ(error_code(refused), wire::ErrorCode::UNAUTHORIZED) << token;
    EXPECT_NE(error_message(refused).find("forward"), std::string::npos) << error_message(refused);
  }
  EXPECT_EQ(h.worker->forward_requests_run(), 0u);
  call.cluster_token = "secret";
  EXPECT_LT(max_relative_error(forward_output(h.forward(call)), want), 1e-5);
}

TEST(WorkerForward, Bf16TokensComeBackInBf16CloseToLocalEngine) {
  WorkerHarness h;
  Reference reference("synthetic:tiny:0");
  h.place(1, all_experts(h.spec()));
  ForwardCall call;
  call.layer = 1;
  call.dtype = wire::DType::BF16;
  call.x = random_hidden(12, h.spec().hidden_size, 7);
  Matrix want = reference.forward(1, call.x, call.assignments);
  Frame reply = h.forward(call);
  auto r = reply.envelope().getForwardReply();
  EXPECT_EQ(r.getDtype(), wire::DType::BF16);
  EXPECT_EQ(r.getOutput().size(), size_t{12} * h.spec().hidden_size * 2);
  double err = max_relative_error(forward_output(reply), want);
  EXPECT_LT(err, 2e-2);
  EXPECT_GT(err, 0.0) << "bf16 rounding should show: is the output really bf16?";
}

TEST(WorkerForward, SharedExpertIsServedLikeAnyOther) {
  WorkerHarness h("synthetic:tiny-deepseek:0");
  Reference reference("synthetic:tiny-deepseek:0");
  ASSERT_TRUE(h.spec().has_shared_expert);
  h.place(1, all_experts(h.spec()));
  ForwardCall call;
  call.layer = h.spec().moe_layers.front();
  call.x = random_hidden(9, h.spec().hidden_size, 3);
  Matrix want = reference.forward(call.layer, call.x, call.assignments);
  bool has_shared = false;
  for (const auto& a : call.assignments) has_shared |= a.expert == h.spec().shared_expert_id();
  ASSERT_TRUE(has_shared);
  EXPECT_LT(max_relative_error(forward_output(h.forward(call)), want), 1e-5);
}

TEST(WorkerForward, ConcurrentRequestsFromSeveralConnectionsAreBatchedAndCorrect) {
  WorkerOptions options;
  options.batch_wait_us = 100000;  // 100 ms: every request sent at once lands in few batches
  options.batch_threads = 1;
  WorkerHarness h("synthetic:tiny:0", options);
  Reference reference("synthetic:tiny:0");
  h.place(1, all_experts(h.spec()));

  constexpr int kConnections = 4, kPerConnection = 4;
  std::vector<ForwardCall> calls;
  std::vector<Matrix> want;
  for (int i = 0; i < kConnections * kPerConnection; ++i) {
    ForwardCall call;
    call.layer = 0;
    call.x = random_hidden(1 + i % 5, h.spec().hidden_size, 1000 + i);
    want.push_back(reference.forward(0, call.x, call.assignments));
    calls.push_back(std::move(call));
  }
  for (int c = 0; c < kConnections; ++c) h.client(c);

  std::vector<std::future<Frame>> replies(calls.size());
  std::vector<std::thread> senders;
  for (int c = 0; c < kConnections; ++c) {
    senders.emplace_back([&, c] {
      for (int k = 0; k < kPerConnection; ++k) {
        size_t i = static_cast<size_t>(c * kPerConnection + k);
        capnp::MallocMessageBuilder message;
        build_forward(message, calls[i]);
        replies[i] = h.client(c).request(message, 10s);
      }
    });
  }
  for (auto& s : senders) s.join();
  for (size_t i = 0; i < calls.size(); ++i) {
    Matrix got = forward_output(replies[i].get());
    EXPECT_LT(max_relative_error(got, want[i]), 1e-5) << "request " << i;
  }
  // The batcher counts a batch once its replies are out.
  EXPECT_TRUE(FakeCoordinator::wait_for([&] { return h.worker->forward_requests_run() == calls.size(); }));
  EXPECT_LT(h.worker->batches_run(), calls.size()) << "no two requests were batched together";
  auto& registry = h.worker->metrics_registry();
  EXPECT_EQ(metric_value(registry, "moe_worker_batch_tokens"), static_cast<double>(h.worker->batches_run()));
  EXPECT_EQ(metric_value(registry, "moe_worker_forward_seconds"), static_cast<double>(calls.size()));
  EXPECT_EQ(metric_value(registry, "moe_worker_queue_seconds"), static_cast<double>(calls.size()));
}

TEST(WorkerForward, TokensPerExpertReachMetricsAndHeartbeats) {
  WorkerHarness h;
  Reference reference("synthetic:tiny:0");
  h.place(1, all_experts(h.spec()));
  std::map<ExpertKey, uint64_t> sent;
  for (int i = 0; i < 3; ++i) {
    ForwardCall call;
    call.layer = i % 2;
    call.x = random_hidden(10, h.spec().hidden_size, 50 + i);
    reference.forward(call.layer, call.x, call.assignments);
    for (const auto& a : call.assignments) ++sent[{call.layer, a.expert}];
    forward_output(h.forward(call));
  }
  auto& registry = h.worker->metrics_registry();
  for (const auto& [key, tokens] : sent) {
    EXPECT_EQ(metric_value(registry, "moe_expert_tokens_total",
                           {{"layer", std::to_string(key.layer)}, {"expert", std::to_string(key.expert)}}),
              static_cast<double>(tokens))
        << "layer " << key.layer << " expert " << key.expert;
  }
  EXPECT_TRUE(h.coordinator.wait_for([&] { return h.coordinator.reported_tokens() == sent; }))
      << "heartbeats did not report the tokens computed";
  EXPECT_EQ(metric_value(registry, "moe_worker_experts_hosted"), 16.0);
  EXPECT_GT(metric_value(registry, "moe_worker_weight_bytes"), 0.0);
  EXPECT_EQ(metric_value(registry, "moe_worker_epoch"), 1.0);
}

}  // namespace
}  // namespace moe::test
