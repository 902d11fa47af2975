// One expert's device layout (kernel_api.h: gate [I][Hp], up [I][Hp], down [H][Ip], bf16, zero
// padding) and its upload from host views of any dtype (converted to bf16 on the host).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/expert_backend.h"

namespace moe::cuda {

struct ExpertLayout {
  int64_t hidden = 0;
  int64_t inter = 0;
  int64_t hidden_padded = 0;
  int64_t inter_padded = 0;
  size_t gate_offset = 0;  // in elements from the slot's start
  size_t up_offset = 0;
  size_t down_offset = 0;
  size_t bytes = 0;
};

// Checks the three views agree (gate/up [I, H], down [H, I], data present) and lays them out.
// Throws std::invalid_argument naming the expert and the shapes.
ExpertLayout expert_layout(ExpertKey key, const ExpertWeightsView& weights);

// Writes the expert into `slot` (layout.bytes of device memory) and waits for the copies.
void upload_expert(const ExpertWeightsView& weights, const ExpertLayout& layout, void* slot, cudaStream_t stream);

}  // namespace moe::cuda
