// Grow-only device and pinned-host buffers for per-call workspaces and staging: they reallocate only
// when a call needs more than they hold, so steady-state calls (and captured graphs) allocate nothing.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <utility>

#include "kernels/cuda/cuda_check.h"

namespace moe::cuda {

template <bool kPinnedHost>
class GrowBuffer {
 public:
  GrowBuffer() = default;
  GrowBuffer(const GrowBuffer&) = delete;
  GrowBuffer& operator=(const GrowBuffer&) = delete;
  ~GrowBuffer() { release(); }

  // Ensures room for `bytes`; the contents are lost when it grows. Returns true if it reallocated.
  bool reserve(size_t bytes) {
    if (bytes <= capacity_) return false;
    release();
    const size_t rounded = (bytes + 4095) / 4096 * 4096;
    if constexpr (kPinnedHost) {
      MOE_CUDA_CHECK(cudaHostAlloc(&data_, rounded, cudaHostAllocDefault));
    } else {
      MOE_CUDA_CHECK(cudaMalloc(&data_, rounded));
    }
    capacity_ = rounded;
    return true;
  }
  void* data() const { return data_; }
  size_t capacity() const { return capacity_; }

 private:
  void release() {
    if (data_ == nullptr) return;
    if constexpr (kPinnedHost) {
      cudaFreeHost(data_);
    } else {
      cudaFree(data_);
    }
    data_ = nullptr;
    capacity_ = 0;
  }
  void* data_ = nullptr;
  size_t capacity_ = 0;
};

using DeviceBuffer = GrowBuffer<false>;
using PinnedBuffer = GrowBuffer<true>;

}  // namespace moe::cuda
