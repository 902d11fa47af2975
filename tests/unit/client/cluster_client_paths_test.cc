// ClusterClient against in-process peers, on the paths around the plain call: a call whose worker
// shards exceed the frame limit (split into several requests, output equal to the unsplit call, every
// request and reply under the limit), experts with no replica (ClusterUnavailableError naming them, at
// once on a fresh placement, else at the deadline), and a client that starts from a list of workers and
// refreshes from them while the coordinator is away.
#include <gtest/gtest.h>

#include <chrono>

#include "runtime/client/cluster_client.h"
#include "runtime/client/shard_split.h"
#include "tests/unit/client/client_peer_fixture.h"

namespace moe::test {
namespace {

constexpr size_t kSmallFrame = 16 << 10;  // holds the tiny model's modelInfo, not a 300-token shard

size_t requests_of(const std::vector<TestWorker*>& workers) {
  size_t n = 0;
  for (TestWorker* w : workers) n += w->received().size();
  return n;
}

TEST_F(ClusterClientPeerTest, SplitsShardsOverTheFrameLimitWithTheSameOutput) {
  start("tiny");
  ClusterClient whole(coordinator->address(), f32_options());
  ClusterClientOptions small = f32_options();
  small.frame_limits.max_message_bytes = kSmallFrame;
  ClusterClient split(coordinator->address(), small);
  const std::vector<TestWorker*> workers{a.get(), b.get(), c.get()};
  for (TestWorker* w : workers) w->set_row_by_row(true);

  {
    for (int32_t layer : whole.spec().moe_layers) {
      Matrix x = random_input(300, whole.spec().hidden_size, 40 + layer);
      const size_t before_whole = requests_of(workers);
      Matrix want = whole.forward(layer, x);
      const size_t whole_requests = requests_of(workers) - before_whole;
      bool whole_over = false;  // the unsplit call really had a request over the small limit
      for (TestWorker* w : workers)
        for (const auto& r : w->received()) whole_over |= r.frame_bytes > kSmallFrame;
      ASSERT_TRUE(whole_over) << "the test input is too small to need a split";

      for (TestWorker* w : workers) w->clear_received();
      Matrix got = split.forward(layer, x);
      EXPECT_GT(requests_of(workers), whole_requests) << "layer " << layer << ": nothing was split";
      for (TestWorker* w : workers) {
        for (const auto& r : w->received()) {
          EXPECT_LE(r.frame_bytes, kSmallFrame) << "request of " << r.num_tokens << " tokens";
          EXPECT_GT(r.reply_bytes, 0u);
          EXPECT_LE(r.reply_bytes, kSmallFrame) << "reply of " << r.num_tokens << " tokens";
        }
        w->clear_received();
      }
      ASSERT_EQ(got.rows, want.rows);
      EXPECT_EQ(got.data, want.data) << "layer " << layer << ": the split call differs from the unsplit one";
      EXPECT_LT(max_row_relative_error(got, reference->forward(layer, x)), 1e-5);
    }
  }
}

TEST(ShardSplit, OneTokenOverTheLimitIsRefusedNamingTheSizes) {
  const std::vector<TokenAssignment> pairs{{0, 1, 0.5f}, {0, 2, 0.5f}, {1, 1, 1.f}};
  const std::vector<size_t> items{0, 1, 2};
  const std::vector<int32_t> workers{0, 0, 0};
  try {
    split_by_frame_limit(pairs, items, workers, 4096, wire::DType::F32, 8 << 10, 0);
    FAIL() << "a 16 KiB row fitted an 8 KiB frame";
  } catch (const std::length_error& e) {
    EXPECT_NE(std::string(e.what()).find("over the frame limit of 8192 bytes"), std::string::npos) << e.what();
  }
  // Two tokens that each fit alone but not together: two chunks, each token whole.
  const size_t one = forward_request_bound(1, 2, 4096, wire::DType::F32, 0);
  const auto chunks = split_by_frame_limit(pairs, items, workers, 4096, wire::DType::F32, one + 64, 0);
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunks[0], (std::vector<size_t>{0, 1}));
  EXPECT_EQ(chunks[1], (std::vector<size_t>{2}));
  // Everything fits: one chunk in the original order.
  EXPECT_EQ(split_by_frame_limit(pairs, items, workers, 4096, wire::DType::F32, 1 << 20, 0).size(), 1u);
}

TEST_F(ClusterClientPeerTest, UnplacedExpertsFailAtOnceWithATypedErrorNamingThem) {
  start("tiny");
  placement.replicas.erase({0, 5});
  coordinator->set_placement(placement);
  ClusterClientOptions options = f32_options();
  options.deadline = 5000ms;
  ClusterClient client(coordinator->address(), options);
  Matrix x = random_input(64, client.spec().hidden_size, 12);  // 64 tokens top-2 of 8: expert 5 is hit
  const auto start_time = std::chrono::steady_clock::now();
  try {
    client.forward(0, x);
    FAIL() << "forward returned although expert 5 is placed nowhere";
  } catch (const ClusterUnavailableError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("experts (0, 5) are unavailable"), std::string::npos) << message;
    EXPECT_NE(message.find("placement epoch 1"), std::string::npos) << message;
    ASSERT_EQ(e.experts().size(), 1u);
    EXPECT_EQ(e.experts()[0].layer, 0);
    EXPECT_EQ(e.experts()[0].expert, 5);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start_time, 2000ms)
      << "a fresh placement still lacking the expert should end the call at once, not at the 5 s deadline";
  EXPECT_GE(coordinator->placement_requests(), 2) << "it should have refreshed once before giving up";
  // Layer 1 has every expert: unaffected.
  EXPECT_LT(max_row_relative_error(client.forward(1, x), reference->forward(1, x)), 1e-5);
}

TEST_F(ClusterClientPeerTest, UnplacedExpertsFailAtTheDeadlineWhenNoOneCanRefresh) {
  start("tiny");
  placement.replicas.erase({1, 2});
  placement.replicas.erase({1, 6});
  coordinator->set_placement(placement);
  ClusterClientOptions options = f32_options();
  options.deadline = 300ms;
  ClusterClient client(coordinator->address(), options);
  coordinator->stop();
  Matrix x = random_input(64, client.spec().hidden_size, 13);
  const auto start_time = std::chrono::steady_clock::now();
  try {
    client.forward(1, x);
    FAIL() << "forward returned although experts 2 and 6 are placed nowhere";
  } catch (const ClusterUnavailableError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("experts (1, 2), (1, 6) are unavailable"), std::string::npos) << message;
    EXPECT_NE(message.find("deadline of 300 ms"), std::string::npos) << message;
    EXPECT_EQ(e.experts().size(), 2u);
  }
  const auto elapsed = std::chrono::steady_clock::now() - start_time;
  EXPECT_GE(elapsed, 290ms);
  EXPECT_LT(elapsed, 2000ms);
}

TEST_F(ClusterClientPeerTest, StartsFromAWorkerListWhenNoCoordinatorAnswers) {
  start("tiny");
  coordinator->stop();
  b->serve_metadata(placement);
  ClusterClient client(ClusterEndpoints{coordinator->address(), {"127.0.0.1:1", b->address()}}, f32_options());
  EXPECT_EQ(client.placement()->epoch(), 1u);
  for (int32_t layer : client.spec().moe_layers) {
    Matrix x = random_input(40, client.spec().hidden_size, 20 + layer);
    EXPECT_LT(max_row_relative_error(client.forward(layer, x), reference->forward(layer, x)), 1e-5);
  }
  // Workers alone, no coordinator address at all.
  ClusterClient workers_only(ClusterEndpoints{"", {b->address()}}, f32_options());
  Matrix x = random_input(10, client.spec().hidden_size, 30);
  EXPECT_LT(max_row_relative_error(workers_only.forward(0, x), reference->forward(0, x)), 1e-5);
}

TEST_F(ClusterClientPeerTest, NoOneGivingTheModelThrowsNamingEachPeer) {
  start("tiny");
  coordinator->stop();
  try {
    ClusterClient client(ClusterEndpoints{coordinator->address(), {a->address()}}, f32_options());
    FAIL() << "a client started although no peer gave the model";
  } catch (const ClusterError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(coordinator->address()), std::string::npos) << message;
    EXPECT_NE(message.find(a->address() + ": badRequest"), std::string::npos) << message;
  }
}

TEST_F(ClusterClientPeerTest, RefreshFallsBackToWorkersAndNeverGoesBackAnEpoch) {
  start("tiny");
  ClusterClient client(coordinator->address(), f32_options());
  ASSERT_EQ(client.placement()->epoch(), 1u);
  coordinator->stop();

  // A worker with an older placement is not believed.
  PeerPlacement old = placement;
  old.epoch = 0;
  a->serve_metadata(old);
  EXPECT_FALSE(client.refresh_placement());
  EXPECT_EQ(client.placement()->epoch(), 1u);

  // Epoch 2 moves expert 3 of layer 0 from A to B: B has it now, A refuses it.
  PeerPlacement moved = placement;
  moved.epoch = 2;
  moved.replicas[{0, 3}] = {{1u, 1.f}};
  b->load({0, 3});
  b->serve_metadata(moved);  // B is in the cached placement: asked without being listed
  a->set_min_epoch(2);
  b->set_min_epoch(2);
  c->set_min_epoch(2);
  Matrix x = random_input(64, client.spec().hidden_size, 31);
  EXPECT_LT(max_row_relative_error(client.forward(0, x), reference->forward(0, x)), 1e-5);
  EXPECT_EQ(client.placement()->epoch(), 2u) << "the staleEpoch replies should have made it fetch epoch 2 from B";
}

}  // namespace
}  // namespace moe::test
