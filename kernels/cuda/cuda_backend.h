// The CUDA expert backend: bf16 expert weights resident in device memory, grouped GEMMs over the
// tokens permuted by expert, fp32 accumulation (design notes: kernels/cuda/README.md).
//
// Besides the host-pointer ExpertBackend::forward it offers forward_device(), which takes device
// pointers and only enqueues work on the caller's stream (no host synchronisation, no allocation once
// the workspace has grown to the size of the call), so it can be timed on device data and captured in
// a CUDA graph.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "kernels/expert_backend.h"

namespace moe {

// One layer's forward on device data. x: [num_tokens, hidden] f32, out: [num_tokens, hidden] f32
// (overwritten), assignments: [num_assignments] TokenAssignment, all in device memory of the backend's
// device.
struct DeviceForwardArgs {
  int32_t layer = 0;
  const float* x = nullptr;
  int64_t num_tokens = 0;
  int64_t hidden = 0;
  const TokenAssignment* assignments = nullptr;
  int64_t num_assignments = 0;
  float* out = nullptr;
};

// The kernels that run a layer's experts. kAuto measures: the first call in a size class (mean rows
// per expert, by powers of two) on a layer shape (hidden, largest intermediate, experts loaded) times
// each candidate path on the call's own inputs, twice, and every layer of that shape keeps the fastest
// for that class (logged to stderr); during graph capture, before that measurement, it uses a fixed
// rule (auto_expert_path). The others force one path (benchmarks, tests).
//   kStreaming: one warp per weight row streams it once per 16 rows of its expert (decode).
//   kTiles32/64/128: mma.sync grouped GEMMs with 32-, 64- or 128-row tiles, epilogues fused.
//   kCublas: tokens gathered by expert, cuBLAS GEMMs per expert, SwiGLU and scatter-add kernels;
//            reads the per-expert counts back to the host first, so it cannot be graph-captured.
enum class CudaExpertPath { kAuto, kStreaming, kTiles32, kTiles64, kTiles128, kCublas };

std::string_view to_string(CudaExpertPath path);
// "auto", "streaming", "tiles32", "tiles64", "tiles128", "cublas"; nullopt for anything else.
std::optional<CudaExpertPath> parse_cuda_expert_path(std::string_view name);

// kAuto's fixed rule for `num_assignments` rows over `experts_with_rows` (at most) experts.
CudaExpertPath auto_expert_path(int64_t num_assignments, int64_t experts_with_rows);
// The paths kAuto times for such a call (the rule's choice among them; one path: nothing to time).
std::vector<CudaExpertPath> auto_path_candidates(int64_t num_assignments, int64_t experts_with_rows);
// The size class kAuto keeps one measured choice for: the bit width of the mean rows per expert.
int auto_size_class(int64_t num_assignments, int64_t experts_with_rows);

class CudaBackend : public ExpertBackend {
 public:
  virtual int device() const = 0;

  // The path later forwards use (default kAuto).
  virtual void set_expert_path(CudaExpertPath path) = 0;
  // The path a forward of `num_assignments` assignments on `layer` would run now (never kAuto): the
  // forced one, kAuto's measured choice once made, else kAuto's rule.
  virtual CudaExpertPath resolve_expert_path(int32_t layer, int64_t num_assignments) const = 0;

  // Enqueues the layer on `stream`. The host checks what it can see (layer loaded, hidden size); the
  // assignments themselves live on the device, so one naming an unloaded expert or a token outside
  // [0, num_tokens) is skipped there and recorded: check_device_assignments() reports it.
  // Graph capture: capture after one uncaptured call of the same (or larger) num_tokens and
  // num_assignments, and re-capture after loading or unloading experts of the layer; not on the
  // kCublas path (it synchronises `stream` to read the per-expert counts).
  // Not to be called concurrently with another forward on the same backend, and calls on different
  // streams must be ordered by the caller (an event or a sync): they share one device workspace.
  virtual void forward_device(const DeviceForwardArgs& args, cudaStream_t stream) = 0;

  // Synchronises `stream`; throws std::invalid_argument if a forward_device call since the last check
  // skipped an invalid assignment, and clears the record.
  virtual void check_device_assignments(cudaStream_t stream) = 0;

  // Bytes of device memory the weight pool holds (loaded experts plus free pooled slots).
  virtual size_t pool_bytes() const = 0;
};

// Throws std::runtime_error when `device` does not exist (the message gives the device count).
std::unique_ptr<CudaBackend> make_cuda_backend(int device = 0);

}  // namespace moe
