// Makes the ExpertBackend named on the command line, and tells how much weight memory the machine
// offers for it. The CUDA backend exists only in builds with kernels/cuda (MOE_HAVE_CUDA_BACKEND).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "kernels/expert_backend.h"

namespace moe {

// "cpu" (threads <= 0: OpenBLAS default) or "cuda" (device 0, expert kernels `cuda_path`: see
// CudaExpertPath). Throws std::runtime_error for cuda in a build without it ("this build has no CUDA
// backend") and std::invalid_argument for other names.
std::unique_ptr<ExpertBackend> make_worker_backend(const std::string& name, int threads,
                                                   const std::string& cuda_path = "auto");

// Default weight memory: 80% of physical RAM (cpu) or of free device memory (cuda).
uint64_t default_memory_bytes(const std::string& backend);

// Bytes one weight takes in the backend's own format: cpu converts to f32, cuda keeps bf16.
uint64_t backend_bytes_per_weight(const std::string& backend);

}  // namespace moe
