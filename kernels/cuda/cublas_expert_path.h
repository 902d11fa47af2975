// A second prefill path for the compute-bound regime (many rows per expert): per expert, the gate/up and
// down projections are cublasGemmEx calls (bf16 in, fp32 compute; wgmma kernels on Hopper), around
// three small kernels (cublas_expert_kernels.h): gather x rows to bf16 in expert-sorted order, SwiGLU,
// weighted scatter-add into out. The per-expert row counts must be known on the host (host_offsets),
// so the caller copies ws.offsets back before enqueue.
//
// One object per device and per stream user: it holds a cuBLAS handle (created on the device current
// at construction) and grow-only scratch (xs, gu, y, cuBLAS workspace). Not thread-safe.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "kernels/cuda/cublas_expert_plan.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/kernel_api.h"

struct cublasContext;  // cublas_api.h: typedef struct cublasContext* cublasHandle_t

namespace moe::cuda {

class CublasExpertPath {
 public:
  CublasExpertPath();  // cublasCreate (throws std::runtime_error naming the cublasStatus_t), default math mode
  ~CublasExpertPath();
  CublasExpertPath(const CublasExpertPath&) = delete;
  CublasExpertPath& operator=(const CublasExpertPath&) = delete;

  // Enqueues one layer's expert computation on `stream` (no host sync inside; cudaMalloc on growth):
  //   host_offsets: [args.num_experts + 1] host copy of ws.offsets (rows of expert e are
  //     [host_offsets[e], host_offsets[e + 1]) in ws.sorted_token / ws.sorted_weight order).
  //   host_entries: [args.num_experts] host copy of args.experts (same device pointers; gate == nullptr:
  //     not loaded). Every expert with rows must be loaded and have up == gate + I_e * Hp.
  //   x: [args.num_tokens][args.hidden] f32 on the device (args.x_bf16 is not used).
  //   args.out: [T][H] f32, already zeroed; this ADDS weight * expert_output into it.
  //   args.h: bf16 scratch [A][args.inter_padded_max], used for the SwiGLU output.
  // Throws std::logic_error on inconsistent offsets/entries, std::invalid_argument when a cuBLAS int
  // would overflow, std::runtime_error on CUDA/cuBLAS failures.
  void enqueue(const ExpertLayerArgs& args, const RoutingWorkspace& ws, const float* x, const int32_t* host_offsets,
               const ExpertDeviceEntry* host_entries, cudaStream_t stream);

 private:
  void check_args(const ExpertLayerArgs& args, const RoutingWorkspace& ws, const float* x,
                  const int32_t* host_offsets, const ExpertDeviceEntry* host_entries) const;
  void plan(const ExpertLayerArgs& args, const int32_t* host_offsets, const ExpertDeviceEntry* host_entries);
  void reserve_scratch(const ExpertLayerArgs& args, int64_t rows);
  void bind_stream(cudaStream_t stream);
  void gate_up_gemms(const ExpertDeviceEntry* host_entries);
  void down_gemms(const ExpertLayerArgs& args, const ExpertDeviceEntry* host_entries);

  int device_ = -1;  // current device at construction: the handle's device
  cublasContext* handle_ = nullptr;
  DeviceBuffer cublas_workspace_;
  DeviceBuffer xs_;  // [rows][Hp] bf16
  DeviceBuffer gu_;  // [rows][2 Ip_max] bf16
  DeviceBuffer y_;   // [rows][cublas_ld_y(H)] f32
  std::vector<CublasExpertDims> dims_;
  std::vector<CublasExpertGemms> plan_;
};

}  // namespace moe::cuda
