// `moectl bench engine --deterministic`: the cost of the deterministic mode on one MoE layer in this
// process. Two LocalEngines on the same synthetic layer (the bench engine's shape, f32 and bf16 weights),
// one in the default mode and one deterministic, timed alternately (ABAB) on the same routed inputs in
// the same run; each row gives both medians, the cost (median of the per-pair ratios) and whether the
// first token's output is the same bits alone as in its batch, in each mode.
// `moectl bench cluster --deterministic`: the same on two loopback clusters started side by side (one
// coordinator + W workers each, the same synthetic preset), one with --deterministic.
#pragma once

#include <ostream>

#include "cli/bench_cluster.h"
#include "cli/bench_engine.h"

namespace moe {

// Prints the table to `out`; returns 0 (the cost is a figure, not a failure).
int run_bench_engine_determinism(const BenchEngineOptions& options, std::ostream& out);
// Throws when a cluster cannot start.
int run_bench_cluster_determinism(const BenchClusterOptions& options, std::ostream& out);

}  // namespace moe
