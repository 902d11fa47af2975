// `moectl bench balance`: the load balancer (runtime/placement/balancer.h) on a load matrix of L layers x E
// experts (Zipf(s) over seeded random expert ranks per layer, or read from a CSV/JSON file) for W workers x
// S slots per layer, beside a contiguous placement without replicas (expert e on worker e * W / E). It plans
// a first window from the contiguous placement and a second window, with multiplicative +-drift noise on
// the loads, from its first plan; it prints imbalance (mean and max over layers), slots changed and
// planning time, beside the EPLB baseline (cli/bench_eplb.h, hierarchical and global) run on the same loads
// in the same run (planning times alternated with ours, median of per-pair ratios), and the targets.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace moe {

struct BenchBalanceOptions {
  int layers = 58;
  int experts = 256;
  int workers = 32;
  int slots = 9;            // per worker per layer
  double zipf = 1.2;
  std::string load_file;    // CSV (one layer per line) or JSON ([[...], ...]); overrides layers/experts/zipf
  double drift = 0.2;       // second window: each load times 1 + U(-drift, drift)
  double tokens = 1e6;      // tokens per layer of the Zipf generator
  uint64_t seed = 1;
  int eplb_groups = 8;      // EPLB's expert groups (hierarchical); must divide experts
  int eplb_nodes = 0;       // EPLB's nodes (hierarchical); 0: workers / 8 when that divides, else 1
  int pairs = 3;            // planning time: ours and EPLB alternated this many times
};

// Zipf(s) loads: in each layer a seeded random permutation ranks the experts, rank k gets tokens * k^-s / H.
std::vector<std::vector<double>> zipf_loads(int layers, int experts, double s, double tokens, uint64_t seed);
// Each load times 1 + U(-drift, drift), seeded.
std::vector<std::vector<double>> drifted_loads(const std::vector<std::vector<double>>& loads, double drift, uint64_t seed);
// A load matrix from CSV or JSON (chosen by a leading '['); throws std::runtime_error naming the file and
// the row on ragged rows, non-numbers or negative values.
std::vector<std::vector<double>> read_load_file(const std::string& path);

// Runs the benchmark and prints the table to `out`, each target marked met or MISSED. Returns 0 (a missed
// target is a figure, not a failure); bad options or loads throw (PlacementError, std::runtime_error).
int run_bench_balance(const BenchBalanceOptions& options, std::ostream& out);

}  // namespace moe
