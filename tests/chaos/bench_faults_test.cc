// `moectl bench faults` end to end, briefly (--seconds 1): it runs every fault type on real daemons,
// prints one row per type and the targets, and never sees a wrong answer. Missed availability targets
// (exit 1) are the figures' business, not this test's.
#include <gtest/gtest.h>

#include "tests/integration/daemon_process.h"
#include "tests/integration/integration_util.h"

namespace moe::integration {
namespace {

TEST(BenchFaults, PrintsEveryFaultTypeAndNeverAWrongAnswer) {
  require_binaries({"moectl", "moe-coordinator", "moe-worker"});
  const auto dir = scratch_dir("bench-faults");
  const auto log = dir / "moectl.log";
  const std::string status = run_to_completion({bin_path("moectl"), "bench", "faults", "--seconds", "1"}, log, 150s);
  const std::string out = read_text(log);
  ASSERT_TRUE(status == "exit 0" || status == "exit 1") << status << "\n" << out;
  for (const char* row : {"worker kill -9, replicas 2", "worker kill -9, replicas 1", "worker SIGSTOP past its lease",
                          "coordinator kill -9 + restart, state file", "coordinator kill -9 + restart, no state file",
                          "worker joining", "drain of a worker"})
    EXPECT_NE(out.find(std::string(row) + " "), std::string::npos) << "no row for " << row << "\n" << out;
  EXPECT_NE(out.find("targets:"), std::string::npos) << out;
  EXPECT_NE(out.find("met    zero wrong answers"), std::string::npos) << out;
  EXPECT_EQ(out.find("NOT recovered"), std::string::npos) << out;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace moe::integration
