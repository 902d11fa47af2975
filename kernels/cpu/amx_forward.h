// The grouped expert forward on the packed bf16 weights (AMX tiles or AVX512_BF16): the CPU backend hands over its (expert, tokens) groups and gets
// each group's expert outputs back; combining them stays with the backend. Work is split into
// (group, block of weight panels) tasks on the backend's thread pool, for decode and prefill alike:
// every task streams its panels' weights once and runs every token of its group against them.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kernels/cpu/amx_experts.h"
#include "kernels/cpu/thread_pool.h"

namespace moe {

struct AmxGroupWork {
  const AmxExpert* expert = nullptr;
  std::vector<const float*> rows;  // the group's input rows, each [hidden] f32
  float* y = nullptr;              // [rows.size(), hidden] expert outputs, row-major
};

// Computes y = expert(rows) for every group. Scratch is the calling thread's, reused across calls.
// row_invariant: each row's result independent of the group's row count (see amx_gate_up).
void amx_forward(PackedEngine engine, ThreadPool& pool, std::span<AmxGroupWork> groups, int64_t hidden,
                 bool row_invariant = false);

}  // namespace moe
