// An owned, 64-byte aligned array of floats (cache-line and AVX-512 aligned), for expert weights and
// per-call scratch of the CPU backend.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>

namespace moe {

class AlignedFloats {
 public:
  AlignedFloats() = default;
  explicit AlignedFloats(size_t n) : size_(n) {
    if (n == 0) return;
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, bytes);
    if (!p) throw std::bad_alloc();
    data_.reset(static_cast<float*>(p));
  }
  float* data() { return data_.get(); }
  const float* data() const { return data_.get(); }
  size_t size() const { return size_; }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> data_;
  size_t size_ = 0;
};

}  // namespace moe
