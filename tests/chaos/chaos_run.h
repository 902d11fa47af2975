// One chaos run: start the cluster a ChaosPlan describes, drive checked load through it (CheckedLoad,
// cli/bench_checked_load.h: two client threads, 3 s deadline per call, every output compared with
// LocalEngine's), apply the plan's faults one after another, heal each, and after the last one check
// the invariants:
//   - every answered call equals LocalEngine's output (no wrong answer; a call fails only with a clear
//     deadline or unavailable-experts error);
//   - no call outlives its deadline (plus 500 ms of slack for scheduling on a loaded machine);
//   - no process crashes (every daemon not killed by the plan still runs; a drained worker exits 0);
//   - after the last fault is healed, full service within 5 s (no failed call ends later), and a new
//     client gets right answers too (no seed ends in an outage).
// The result's report holds the plan, the timeline of faults with their figures, and every violation.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "tests/chaos/chaos_schedule.h"

namespace moe::chaos {

struct ChaosResult {
  bool skipped = false;
  std::string skip_reason;
  std::vector<std::string> violations;
  std::string report;  // plan, timeline, figures
};

// Runs the plan; progress lines go to `progress` as they happen. Never throws for a failure of the
// cluster: that becomes a violation.
ChaosResult run_chaos(const ChaosPlan& plan, std::ostream& progress);

}  // namespace moe::chaos
