// `moectl bench engine`: how fast one MoE layer runs through the CPU backend, for f32 and bf16 expert
// weights, beside figures measured in the same run: the PyTorch CPU peer (HF-style expert loop, the
// venv's torch, tools/torch_cpu_moe_peer.py, same weights and routed inputs), timed alternately with
// ours (ABAB) and reported as the median of the per-pair ratios; today's f32 path (kernel blas:
// OpenBLAS sgemm + streaming kernels); memcpy bandwidth (the ceiling of decode, which streams weights).
// Each row ends with its targets (issue 14) marked met or MISSED.
#pragma once

#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "runtime/core/dtype.h"
#include "runtime/model/synthetic_model.h"

namespace moe {

struct BenchEngineOptions {
  int64_t hidden = 1024;
  int64_t intermediate = 3584;
  int experts = 8;
  int top_k = 2;
  std::vector<int64_t> tokens{1, 16, 128, 1024, 4096};
  std::vector<DType> dtypes{DType::F32, DType::BF16};
  int threads = 0;            // <= 0: OpenBLAS's default
  CpuKernel kernel = CpuKernel::Auto;
  double min_seconds = 0.3;   // per timed segment (ours or peer): repeat until this long
  int min_reps = 3;
  int max_reps = 200;
  int pairs = 5;              // ABAB: segments of ours and of the peer, alternated, per row
  bool peer = true;           // run the PyTorch peer (when python and torch are there)
  std::string peer_python;    // default: <source>/.venv/bin/python
  std::string peer_script;    // default: <source>/tools/torch_cpu_moe_peer.py
  bool blas_reference = true; // time kernel blas on the f32 weights too (today's path)
  uint64_t seed = 1;
  int64_t memcpy_bytes = int64_t{1} << 30;  // buffer for the memcpy bandwidth (much larger than cache)
};

// Median of the ratios a[i] / b[i] (the ABAB figure); throws std::invalid_argument on empty or unequal input.
double median_ratio(const std::vector<double>& a, const std::vector<double>& b);

// Median wall time of f() in seconds: one warm-up call, then repeats until o.min_seconds have passed and at
// least o.min_reps runs were made (at most o.max_reps).
double median_seconds(const BenchEngineOptions& o, const std::function<void()>& f);

// The one-layer synthetic Mixtral of the options' shape that the engine benches time.
SyntheticModelOptions bench_engine_model(const BenchEngineOptions& o, DType dtype);

// Runs the benchmark and prints the table to `out`. Returns 0 (a missed target is a figure, not a
// failure); throws std::invalid_argument on bad options.
int run_bench_engine(const BenchEngineOptions& options, std::ostream& out);

}  // namespace moe
