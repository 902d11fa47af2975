// ClusterClient against in-process peers (TestCoordinator, TestWorker; real wire protocol on loopback):
// parity with LocalEngine (f32 and bf16 on the wire, replicated and shared experts), retry of only the
// failed shards after staleEpoch, moving to a new owner when a worker goes away, the deadline error,
// errors no retry can fix, concurrent callers, and the metrics it records.
#include <gtest/gtest.h>

#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <chrono>
#include <future>
#include <thread>

#include "runtime/client/cluster_client.h"
#include "runtime/model/synthetic_model.h"
#include "tests/unit/client/client_test_util.h"
#include "tests/unit/client/cluster_test_peer.h"
#include "tests/unit/client/client_peer_fixture.h"

namespace moe::test {
namespace {

using namespace std::chrono_literals;

TEST_F(ClusterClientPeerTest, MatchesLocalEngineWithF32OnTheWire) {
  start("tiny");
  ClusterClient client(coordinator->address(), f32_options());
  EXPECT_EQ(client.placement()->epoch(), 1u);
  EXPECT_EQ(client.spec().num_experts, 8);
  for (int32_t layer : client.spec().moe_layers) {
    Matrix x = random_input(97, client.spec().hidden_size, 10 + layer);
    RoutingResult got_routing, want_routing;
    Matrix got = client.forward(layer, x, &got_routing);
    Matrix want = reference->forward(layer, x, &want_routing);
    EXPECT_LT(max_row_relative_error(got, want), 1e-5) << "layer " << layer;
    EXPECT_EQ(got_routing.topk_ids, want_routing.topk_ids);
  }
  EXPECT_FALSE(a->received().empty());
  EXPECT_FALSE(b->received().empty());
  EXPECT_FALSE(c->received().empty()) << "the replica of expert 0 should take part of its tokens";
  ClientStats stats = client.stats();
  EXPECT_EQ(stats.calls_ok, 2u);
  EXPECT_EQ(stats.tokens, 2u * 97);
  EXPECT_EQ(stats.retries, 0u);
}

TEST_F(ClusterClientPeerTest, MatchesLocalEngineWithBf16OnTheWire) {
  start("tiny");
  ClusterClientOptions options;  // bf16 by default
  ClusterClient client(coordinator->address(), options);
  Matrix x = random_input(64, client.spec().hidden_size, 3);
  double err = max_row_relative_error(client.forward(0, x), reference->forward(0, x));
  EXPECT_LT(err, 2e-2);
  EXPECT_GT(err, 0.0) << "bf16 rounding should show";
}

TEST_F(ClusterClientPeerTest, SharedExpertsOfQwen2AndDeepseekArePlacedLikeOthers) {
  for (std::string preset : {"tiny-qwen2", "tiny-deepseek"}) {
    start(preset);
    ClusterClient client(coordinator->address(), f32_options());
    for (int32_t layer : client.spec().moe_layers) {
      Matrix x = random_input(33, client.spec().hidden_size, 5);
      EXPECT_LT(max_row_relative_error(client.forward(layer, x), reference->forward(layer, x)), 1e-5)
          << preset << " layer " << layer;
    }
  }
}

TEST_F(ClusterClientPeerTest, StaleEpochRetriesOnlyTheAffectedShard) {
  start("tiny");
  ClusterClient client(coordinator->address(), f32_options());  // caches epoch 1
  // The cluster moves to epoch 2 (same owners); worker B already refuses epoch 1, A is still in grace.
  placement.epoch = 2;
  coordinator->set_placement(placement);
  b->set_min_epoch(2);
  Matrix x = random_input(50, client.spec().hidden_size, 7);
  Matrix got = client.forward(1, x);
  EXPECT_LT(max_row_relative_error(got, reference->forward(1, x)), 1e-5);

  auto on_a = a->received(), on_b = b->received(), on_c = c->received();
  ASSERT_EQ(on_a.size(), 1u) << "worker A answered at once: it must not be asked again";
  EXPECT_EQ(on_a[0].epoch, 1u);
  ASSERT_EQ(on_b.size(), 2u);
  EXPECT_EQ(on_b[0].epoch, 1u);
  EXPECT_EQ(on_b[1].epoch, 2u);
  EXPECT_EQ(on_b[1].num_tokens, on_b[0].num_tokens) << "the same tokens go again, no others";
  EXPECT_EQ(on_b[1].pairs, on_b[0].pairs);
  EXPECT_LE(on_c.size(), 1u);
  EXPECT_EQ(client.placement()->epoch(), 2u);
  EXPECT_EQ(client.stats().retries, 1u);
}

TEST_F(ClusterClientPeerTest, MovesToTheNewOwnerWhenAWorkerGoesAway) {
  start("tiny");
  ClusterClient client(coordinator->address(), f32_options());
  Matrix x = random_input(40, client.spec().hidden_size, 8);
  Matrix want = reference->forward(0, x);
  EXPECT_LT(max_row_relative_error(client.forward(0, x), want), 1e-5);  // connections are now cached

  // B dies; the coordinator gives its experts to A in epoch 2 (A loads them first).
  b->stop();
  for (const auto& key : experts_of(source->spec(), 4, 7)) a->load(key);
  placement.epoch = 2;
  placement.dead = {1};
  for (auto& [key, list] : placement.replicas)
    for (auto& r : list) if (r.first == 1) r.first = 0;
  coordinator->set_placement(placement);

  EXPECT_LT(max_row_relative_error(client.forward(0, x), want), 1e-5);
  EXPECT_GE(client.stats().retries, 1u);
  EXPECT_EQ(client.placement()->epoch(), 2u);
}

TEST_F(ClusterClientPeerTest, KeepsTheCachedPlacementWhenTheCoordinatorIsGone) {
  start("tiny");
  ClusterClient client(coordinator->address(), f32_options());
  coordinator->stop();
  b->fail_next(wire::ErrorCode::OVERLOADED, 2);
  Matrix x = random_input(30, client.spec().hidden_size, 9);
  EXPECT_LT(max_row_relative_error(client.forward(0, x), reference->forward(0, x)), 1e-5);
  EXPECT_EQ(client.placement()->epoch(), 1u);
  EXPECT_GE(client.stats().retries, 2u);
}

TEST_F(ClusterClientPeerTest, ThrowsADeadlineErrorNamingAttemptsAndTheLastError) {
  start("tiny");
  ClusterClientOptions options = f32_options();
  options.deadline = 300ms;
  ClusterClient client(coordinator->address(), options);
  b->fail_next(wire::ErrorCode::OVERLOADED, -1);
  Matrix x = random_input(20, client.spec().hidden_size, 11);
  const auto start_time = std::chrono::steady_clock::now();
  try {
    client.forward(0, x);
    FAIL() << "forward returned although worker B never answers";
  } catch (const ClusterDeadlineError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("deadline exceeded after "), std::string::npos) << message;
    EXPECT_NE(message.find("attempts"), std::string::npos) << message;
    EXPECT_NE(message.find("overloaded"), std::string::npos) << message;
    EXPECT_NE(message.find(b->address()), std::string::npos) << message;
  }
  const auto elapsed = std::chrono::steady_clock::now() - start_time;
  EXPECT_GE(elapsed, 290ms);
  EXPECT_LT(elapsed, 2000ms);
  EXPECT_EQ(client.stats().calls_deadline_exceeded, 1u);
  EXPECT_GE(b->received().size(), 3u) << "it should have retried with backoff";
}

TEST_F(ClusterClientPeerTest, ErrorsARetryCannotFixThrowAtOnce) {
  start("tiny");
  ClusterClient client(coordinator->address(), f32_options());
  b->fail_next(wire::ErrorCode::BAD_REQUEST, 1);
  Matrix x = random_input(20, client.spec().hidden_size, 13);
  const auto start_time = std::chrono::steady_clock::now();
  try {
    client.forward(0, x);
    FAIL() << "badRequest must not be retried";
  } catch (const ClusterDeadlineError& e) {
    FAIL() << "badRequest must fail at once, not at the deadline: " << e.what();
  } catch (const ClusterError& e) {
    EXPECT_NE(std::string(e.what()).find("badRequest"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start_time, 1000ms);
  EXPECT_EQ(b->received().size(), 1u);
  EXPECT_THROW(client.forward(1, Matrix(2, 3)), std::invalid_argument);
  EXPECT_ANY_THROW(client.forward(7, x));
}

TEST_F(ClusterClientPeerTest, ManyThreadsForwardAtOnce) {
  start("tiny");
  ClusterClient client(coordinator->address(), f32_options());
  std::vector<std::future<double>> results;
  for (int thread = 0; thread < 4; ++thread) {
    results.push_back(std::async(std::launch::async, [&, thread] {
      double worst = 0;
      for (int i = 0; i < 8; ++i) {
        const int32_t layer = (thread + i) % 2;
        Matrix x = random_input(1 + 13 * i, client.spec().hidden_size, 100 * thread + i);
        worst = std::max(worst, max_row_relative_error(client.forward(layer, x), reference->forward(layer, x)));
      }
      return worst;
    }));
  }
  for (auto& r : results) EXPECT_LT(r.get(), 1e-5);
  EXPECT_EQ(client.stats().calls_ok, 32u);
}

TEST_F(ClusterClientPeerTest, RecordsPrometheusMetrics) {
  start("tiny");
  auto registry = std::make_shared<prometheus::Registry>();
  ClusterClientOptions options = f32_options();
  options.registry = registry.get();
  ClusterClient client(coordinator->address(), options);
  b->fail_next(wire::ErrorCode::NOT_READY, 1);
  client.forward(0, random_input(16, client.spec().hidden_size, 14));
  const std::string text = prometheus::TextSerializer().Serialize(registry->Collect());
  EXPECT_NE(text.find("moe_client_forward_calls_total{outcome=\"ok\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("moe_client_retries_total 1"), std::string::npos) << text;
  EXPECT_NE(text.find("moe_client_tokens_total 16"), std::string::npos) << text;
  EXPECT_NE(text.find("moe_client_requests_total{status=\"notReady\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("moe_client_forward_latency_seconds_count 1"), std::string::npos) << text;
}

TEST(ClusterClientConnect, UnreachableCoordinatorThrows) {
  ClusterClientOptions options;
  options.connect_timeout = 500ms;
  EXPECT_ANY_THROW(ClusterClient("127.0.0.1:1", options));
}

}  // namespace
}  // namespace moe::test
