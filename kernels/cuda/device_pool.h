// Pooled device memory for expert weights: slots of one size are carved from large cudaMalloc chunks
// (up to ~1 GiB or 64 slots each), and a released slot is kept for the next expert of that size, so
// loading and unloading experts (rebalancing) does not hit cudaMalloc/cudaFree each time.
// Not thread-safe: the backend serialises access. Memory goes back to the device when the pool dies.
#pragma once

#include <cstddef>
#include <map>
#include <vector>

namespace moe::cuda {

class DevicePool {
 public:
  DevicePool() = default;
  DevicePool(const DevicePool&) = delete;
  DevicePool& operator=(const DevicePool&) = delete;
  ~DevicePool();

  // A slot of at least `bytes` (rounded up to 256). Throws std::runtime_error when the device is out of
  // memory (the message gives the sizes).
  void* acquire(size_t bytes);
  // `ptr` must come from acquire(bytes) with the same `bytes`.
  void release(void* ptr, size_t bytes);
  // Device bytes held in chunks (slots in use plus free ones).
  size_t reserved_bytes() const { return reserved_bytes_; }

  static size_t slot_size(size_t bytes) { return (bytes + 255) / 256 * 256; }

 private:
  std::map<size_t, std::vector<void*>> free_slots_;  // by slot size
  std::vector<void*> chunks_;
  size_t reserved_bytes_ = 0;
};

}  // namespace moe::cuda
