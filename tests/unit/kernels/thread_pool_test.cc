// ThreadPool::parallel_for: every index exactly once, exceptions reach the caller, and several callers
// at once (as concurrent forward calls do) all complete.
#include "kernels/cpu/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

namespace moe {
namespace {

TEST(ThreadPool, RunsEveryIndexExactlyOnce) {
  ThreadPool pool(3);
  EXPECT_EQ(pool.threads(), 3);
  for (int64_t count : {0, 1, 2, 7, 1000}) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(count));
    pool.parallel_for(count, [&](int64_t i) { hits[static_cast<size_t>(i)].fetch_add(1); });
    for (int64_t i = 0; i < count; ++i) EXPECT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "index " << i;
  }
}

TEST(ThreadPool, RethrowsATaskException) {
  ThreadPool pool(2);
  std::atomic<int> ran{0};
  EXPECT_THROW(pool.parallel_for(50,
                                 [&](int64_t i) {
                                   ran.fetch_add(1);
                                   if (i == 17) throw std::runtime_error("task 17 failed");
                                 }),
               std::runtime_error);
  EXPECT_EQ(ran.load(), 50);
  pool.parallel_for(4, [&](int64_t) { ran.fetch_add(1); });  // still usable
  EXPECT_EQ(ran.load(), 54);
}

TEST(ThreadPool, ManyConcurrentCallersAllFinish) {
  ThreadPool pool(2);
  std::vector<int64_t> sums(6, 0);
  std::vector<std::thread> callers;
  for (int c = 0; c < 6; ++c)
    callers.emplace_back([&, c] {
      for (int rep = 0; rep < 20; ++rep) {
        std::atomic<int64_t> sum{0};
        pool.parallel_for(100, [&](int64_t i) { sum.fetch_add(i); });
        sums[static_cast<size_t>(c)] += sum.load();
      }
    });
  for (auto& t : callers) t.join();
  for (int64_t s : sums) EXPECT_EQ(s, 20 * 4950);
}

TEST(ThreadPool, RejectsZeroThreads) { EXPECT_THROW(ThreadPool(0), std::invalid_argument); }

}  // namespace
}  // namespace moe
