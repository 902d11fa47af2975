// `moectl bench engine`: how fast one MoE layer runs through the CPU backend, beside the ceilings of
// this machine measured in the same run (OpenBLAS sgemm on the same GEMM shapes; memcpy bandwidth) and
// the peer figures of issue #2 (PyTorch CPU, HF-style loop over experts, 2 cores).
#pragma once

#include <cstdint>
#include <ostream>
#include <vector>

namespace moe {

struct BenchEngineOptions {
  int64_t hidden = 1024;
  int64_t intermediate = 3584;
  int experts = 8;
  int top_k = 2;
  std::vector<int64_t> tokens{1, 16, 128, 1024};
  int threads = 0;            // <= 0: OpenBLAS's default
  double min_seconds = 0.5;   // timing per figure: repeat until this long (and >= min_reps runs)
  int min_reps = 3;
  int max_reps = 200;
  uint64_t seed = 1;
  int64_t memcpy_bytes = int64_t{1} << 30;  // buffer for the memcpy bandwidth (much larger than cache)
};

// Runs the benchmark and prints the table to `out`. Returns 0; throws std::invalid_argument on bad options.
int run_bench_engine(const BenchEngineOptions& options, std::ostream& out);

}  // namespace moe
