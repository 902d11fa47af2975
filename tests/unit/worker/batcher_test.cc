// ForwardBatcher alone: batches by layer within the wait, respects the token cap, bounds what is in
// flight (overloaded), and finishes queued jobs on stop.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <mutex>

#include "worker/forward_batcher.h"

namespace moe {
namespace {

using namespace std::chrono_literals;

std::unique_ptr<ForwardJob> job(int32_t layer, uint32_t tokens) {
  auto j = std::make_unique<ForwardJob>(Frame{}, Responder({}, 0), ForwardJob::Clock::now());
  j->layer = layer;
  j->backend_layer = layer;  // weight version 1
  j->num_tokens = tokens;
  return j;
}

struct Recorder {
  std::mutex mutex;
  std::vector<std::vector<std::pair<int32_t, uint32_t>>> batches;  // (layer, tokens) per job
  ForwardBatcher::RunBatch run() {
    return [this](ForwardBatcher::Batch& batch) {
      std::vector<std::pair<int32_t, uint32_t>> seen;
      for (auto& j : batch) seen.emplace_back(j->layer, j->num_tokens);
      std::lock_guard lock(mutex);
      batches.push_back(seen);
    };
  }
};

TEST(ForwardBatcher, JobsOfOneLayerWithinTheWaitRunTogether) {
  Recorder recorder;
  BatcherOptions options;
  options.batch_wait = 200ms;
  ForwardBatcher batcher(options, recorder.run());
  for (auto [layer, tokens] : std::vector<std::pair<int32_t, uint32_t>>{{0, 1}, {1, 2}, {0, 3}, {0, 4}}) {
    auto j = job(layer, tokens);
    ASSERT_EQ(batcher.submit(j), ForwardBatcher::Submit::Accepted);
  }
  batcher.stop();
  ASSERT_EQ(recorder.batches.size(), 2u);
  EXPECT_EQ(recorder.batches[0], (std::vector<std::pair<int32_t, uint32_t>>{{0, 1}, {0, 3}, {0, 4}}));
  EXPECT_EQ(recorder.batches[1], (std::vector<std::pair<int32_t, uint32_t>>{{1, 2}}));
  EXPECT_EQ(batcher.jobs_run(), 4u);
  EXPECT_EQ(batcher.in_flight(), 0u);
}

TEST(ForwardBatcher, TokenCapSplitsBatchesButABigJobStillRuns) {
  Recorder recorder;
  BatcherOptions options;
  options.batch_wait = 200ms;
  options.max_batch_tokens = 10;
  ForwardBatcher batcher(options, recorder.run());
  for (uint32_t tokens : {6u, 6u, 30u}) {
    auto j = job(0, tokens);
    ASSERT_EQ(batcher.submit(j), ForwardBatcher::Submit::Accepted);
  }
  batcher.stop();
  ASSERT_EQ(recorder.batches.size(), 3u);
  for (const auto& batch : recorder.batches) EXPECT_EQ(batch.size(), 1u);
}

TEST(ForwardBatcher, OverTheQueueBoundIsOverloadedAndAfterStopIsStopped) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> started{0};
  BatcherOptions options;
  options.batch_wait = 0us;
  options.max_queue = 2;
  ForwardBatcher batcher(options, [&](ForwardBatcher::Batch&) {
    ++started;
    released.wait();
  });
  auto a = job(0, 1);
  ASSERT_EQ(batcher.submit(a), ForwardBatcher::Submit::Accepted);
  while (started == 0) std::this_thread::sleep_for(1ms);
  auto b = job(0, 1);
  ASSERT_EQ(batcher.submit(b), ForwardBatcher::Submit::Accepted);
  auto c = job(0, 1);
  EXPECT_EQ(batcher.submit(c), ForwardBatcher::Submit::Overloaded);
  EXPECT_NE(c, nullptr) << "a refused job stays with the caller";
  EXPECT_EQ(batcher.in_flight(), 2u);
  release.set_value();
  batcher.stop();
  EXPECT_EQ(batcher.jobs_run(), 2u);
  auto d = job(0, 1);
  EXPECT_EQ(batcher.submit(d), ForwardBatcher::Submit::Stopped);
}

}  // namespace
}  // namespace moe

namespace moe {
namespace {

TEST(ForwardSlots, ASlotIsHeldUntilEveryCopyIsGoneAndTheObserverSeesEachCount) {
  std::vector<size_t> seen;
  auto slots = ForwardSlots::create(2, [&](size_t n) { seen.push_back(n); });
  auto a = slots->try_acquire();
  auto b = slots->try_acquire();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(slots->try_acquire(), nullptr) << "a third slot past max 2";
  auto copy = a;  // e.g. the reply's copy in a connection's write queue
  a.reset();
  EXPECT_EQ(slots->held(), 2u) << "a copy still holds the slot";
  copy.reset();
  EXPECT_EQ(slots->held(), 1u);
  EXPECT_NE(slots->try_acquire(), nullptr) << "a slot given back can be taken again";
  slots->detach_observer();
  b.reset();
  EXPECT_EQ(slots->held(), 0u);
  EXPECT_EQ(seen, (std::vector<size_t>{1, 2, 1, 2, 1})) << "no call after detach_observer";
}

}  // namespace
}  // namespace moe
