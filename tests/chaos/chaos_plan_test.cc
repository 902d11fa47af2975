// Units of the chaos suite that need no process: plans are a pure function of (schedule, seed) and keep
// the cluster able to serve after every fault; load_figures counts failures, interruptions and the
// time to full service the way the invariants and `moectl bench faults` read them.
#include <gtest/gtest.h>

#include <set>

#include "cli/bench_checked_load.h"
#include "tests/chaos/chaos_schedule.h"

namespace moe::chaos {
namespace {

using namespace std::chrono_literals;

TEST(ChaosPlan, SameSeedSamePlanOtherSeedOtherPlan) {
  for (const std::string& schedule : schedule_names()) {
    EXPECT_EQ(describe(make_plan(schedule, 7)), describe(make_plan(schedule, 7))) << schedule;
    EXPECT_NE(describe(make_plan(schedule, 7)), describe(make_plan(schedule, 8))) << schedule;
  }
  EXPECT_THROW(make_plan("nonsense", 1), std::invalid_argument);
}

TEST(ChaosPlan, NeverLeavesFewerThanAllButOneWorker) {
  for (const std::string& schedule : schedule_names())
    for (uint64_t seed = 0; seed < 300; ++seed) {
      const ChaosPlan plan = make_plan(schedule, seed);
      std::set<int> live;
      for (int i = 0; i < plan.workers; ++i) live.insert(i);
      for (const Fault& f : plan.faults) {
        if ((f.kind == FaultKind::kKillWorker && !f.restart) || f.kind == FaultKind::kDrainWorker) {
          ASSERT_TRUE(live.count(f.target)) << describe(plan);
          live.erase(f.target);
        }
        if (f.kind == FaultKind::kJoinWorker) live.insert(f.target);
        if (f.kind == FaultKind::kStopWorker || f.kind == FaultKind::kHostilePeer ||
            f.kind == FaultKind::kCutClientWorker || f.kind == FaultKind::kCutWorkerCoordinator)
          ASSERT_TRUE(live.count(f.target)) << "a fault on a worker that is gone: " << describe(plan);
        ASSERT_GE(live.size(), static_cast<size_t>(plan.workers - 1)) << describe(plan);
      }
      if (plan.slots > 0) EXPECT_GE(plan.slots * (plan.workers - 1), 16 * plan.replicas) << describe(plan);
      EXPECT_EQ(plan.netns, schedule != "process");
    }
}

LoadCall call(LoadClock::time_point t0, int start_ms, int end_ms, LoadCall::Outcome outcome) {
  LoadCall c;
  c.start = t0 + std::chrono::milliseconds(start_ms);
  c.end = t0 + std::chrono::milliseconds(end_ms);
  c.outcome = outcome;
  return c;
}

TEST(LoadFigures, CountsFailuresInterruptionAndTimeToFullService) {
  const auto t0 = LoadClock::now();
  using O = LoadCall::Outcome;
  std::vector<LoadCall> calls;
  for (int ms = 0; ms < 1000; ms += 10) calls.push_back(call(t0, ms, ms + 5, O::kRight));  // before the fault
  calls.push_back(call(t0, 1000, 2000, O::kDeadline));                                    // the fault at 1000 ms
  calls.push_back(call(t0, 1000, 2400, O::kError));
  for (int ms = 2400; ms < 3000; ms += 10) calls.push_back(call(t0, ms, ms + 5, O::kRight));
  const LoadFigures f = load_figures(calls, t0 + 1000ms, t0 + 3000ms, t0 + 1000ms);
  EXPECT_EQ(f.calls, 2u + 60u);
  EXPECT_EQ(f.failed, 2u);
  EXPECT_EQ(f.errors, 1u);
  EXPECT_EQ(f.wrong, 0u);
  EXPECT_NEAR(f.longest_interruption, 1.405, 1e-6);  // from the fault to the first right call ending at 2405 ms
  EXPECT_NEAR(f.time_to_full_service, 1.4, 1e-6);    // the last failure ended at 2400 ms
  EXPECT_TRUE(f.recovered);
  EXPECT_NE(f.first_problem.find("error"), std::string::npos);

  // A slow but right call counts against full service only with a slow threshold.
  calls.push_back(call(t0, 2500, 2900, O::kRight));
  EXPECT_NEAR(load_figures(calls, t0 + 1000ms, t0 + 3000ms, t0 + 1000ms).time_to_full_service, 1.4, 1e-6);
  EXPECT_NEAR(load_figures(calls, t0 + 1000ms, t0 + 3000ms, t0 + 1000ms, 5, 0.1).time_to_full_service, 1.9, 1e-6);

  // A wrong answer is a failure, and nothing right after it means not recovered.
  calls.push_back(call(t0, 2990, 2995, O::kWrong));
  const LoadFigures w = load_figures(calls, t0 + 1000ms, t0 + 3000ms, t0 + 1000ms);
  EXPECT_EQ(w.wrong, 1u);
  EXPECT_FALSE(w.recovered);
  EXPECT_NE(w.first_problem.find("WRONG"), std::string::npos);
}

}  // namespace
}  // namespace moe::chaos
