// Turns a failed CUDA runtime call into a std::runtime_error naming the call, the place and the
// CUDA error, so every error surfaces where it happened (NCCL's habit).
#pragma once

#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

namespace moe::cuda {

[[noreturn]] inline void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line) {
  throw std::runtime_error(std::string("CUDA call failed: ") + call + " at " + file + ":" + std::to_string(line) +
                           ": " + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")");
}

}  // namespace moe::cuda

#define MOE_CUDA_CHECK(call)                                                    \
  do {                                                                          \
    cudaError_t moe_cuda_status_ = (call);                                      \
    if (moe_cuda_status_ != cudaSuccess) {                                      \
      ::moe::cuda::throw_cuda_error(moe_cuda_status_, #call, __FILE__, __LINE__); \
    }                                                                           \
  } while (0)

// After a kernel launch: reports a bad launch configuration at once (does not synchronize).
#define MOE_CUDA_CHECK_LAUNCH(what) MOE_CUDA_CHECK(((void)(what), cudaGetLastError()))
