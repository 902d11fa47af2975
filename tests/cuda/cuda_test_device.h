// Skips a CUDA test when the machine has no CUDA device (CI builds these tests without one).
#pragma once

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

namespace moe::cuda_test {

inline bool has_cuda_device() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) (void)cudaGetLastError();
  return status == cudaSuccess && count > 0;
}

}  // namespace moe::cuda_test

#define MOE_SKIP_WITHOUT_CUDA_DEVICE()                                       \
  do {                                                                       \
    if (!::moe::cuda_test::has_cuda_device()) GTEST_SKIP() << "no CUDA device"; \
  } while (0)
