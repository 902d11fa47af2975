// The device scratch memory of one forward (routing lists, bf16 activations, the h intermediate) and
// the host path's pinned staging buffers, grown on demand and reused across calls.
#pragma once

#include <cstdint>

#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/kernel_api.h"

namespace moe::cuda {

struct WorkspaceShape {
  int64_t num_experts = 0;       // E: size of the layer's expert table
  int64_t num_assignments = 0;   // A
  int64_t num_tokens = 0;        // T
  int64_t hidden_padded = 0;     // Hp
  int64_t inter_padded_max = 0;  // Ip_max
};

class ForwardWorkspace {
 public:
  ForwardWorkspace();  // allocates the sticky invalid-assignment flag (zeroed)

  // Grows the buffers to fit `shape` (may cudaMalloc, which synchronises) and points `routing` into them.
  void reserve(const WorkspaceShape& shape);
  const RoutingWorkspace& routing() const { return routing_; }
  uint16_t* x_bf16() const { return static_cast<uint16_t*>(x_bf16_.data()); }
  uint16_t* h() const { return static_cast<uint16_t*>(h_.data()); }
  int32_t* invalid_flag() const { return static_cast<int32_t*>(invalid_.data()); }

  // Host path: device copies of the caller's x, assignments and out, and their pinned staging.
  struct HostPath {
    DeviceBuffer x, assignments, out;
    PinnedBuffer x_staging, assignments_staging, out_staging;
  };
  HostPath& host_path() { return host_path_; }

 private:
  DeviceBuffer meta_;  // int32 lists, see reserve()
  DeviceBuffer sorted_weight_;
  DeviceBuffer x_bf16_;
  DeviceBuffer h_;
  DeviceBuffer invalid_;
  RoutingWorkspace routing_;
  HostPath host_path_;
};

}  // namespace moe::cuda
