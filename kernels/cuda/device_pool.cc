// Pooled device memory for expert weights (see device_pool.h).
#include "kernels/cuda/device_pool.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/cuda/cuda_check.h"

namespace moe::cuda {
namespace {

constexpr size_t kChunkTargetBytes = size_t{1} << 30;
constexpr size_t kMaxSlotsPerChunk = 64;

}  // namespace

DevicePool::~DevicePool() {
  for (void* chunk : chunks_) cudaFree(chunk);  // errors cannot be reported from a destructor
}

void* DevicePool::acquire(size_t bytes) {
  const size_t slot = slot_size(bytes);
  std::vector<void*>& free_list = free_slots_[slot];
  if (free_list.empty()) {
    size_t slots = std::clamp<size_t>(kChunkTargetBytes / slot, 1, kMaxSlotsPerChunk);
    void* chunk = nullptr;
    cudaError_t status = cudaMalloc(&chunk, slots * slot);
    if (status != cudaSuccess && slots > 1) {  // a smaller chunk may still fit
      (void)cudaGetLastError();
      slots = 1;
      status = cudaMalloc(&chunk, slot);
    }
    if (status != cudaSuccess) {
      (void)cudaGetLastError();
      size_t free_bytes = 0, total_bytes = 0;
      cudaMemGetInfo(&free_bytes, &total_bytes);
      throw std::runtime_error("cuda backend: cannot allocate " + std::to_string(slot) +
                               " bytes of device memory for expert weights: " + cudaGetErrorString(status) +
                               " (pool holds " + std::to_string(reserved_bytes_) + " bytes, device has " +
                               std::to_string(free_bytes) + " of " + std::to_string(total_bytes) + " free)");
    }
    chunks_.push_back(chunk);
    reserved_bytes_ += slots * slot;
    for (size_t i = slots; i-- > 0;) free_list.push_back(static_cast<char*>(chunk) + i * slot);
  }
  void* ptr = free_list.back();
  free_list.pop_back();
  return ptr;
}

void DevicePool::release(void* ptr, size_t bytes) { free_slots_[slot_size(bytes)].push_back(ptr); }

}  // namespace moe::cuda
