// Names of the CUDA backend's expert paths and kAuto's rule for picking one (cuda_backend.h).
#include <algorithm>
#include <string>

#include "kernels/cuda/cuda_backend.h"

namespace moe {
namespace {

struct PathName {
  CudaExpertPath path;
  std::string_view name;
};

constexpr PathName kPathNames[] = {
    {CudaExpertPath::kAuto, "auto"},         {CudaExpertPath::kStreaming, "streaming"},
    {CudaExpertPath::kTiles32, "tiles32"},   {CudaExpertPath::kTiles64, "tiles64"},
    {CudaExpertPath::kTiles128, "tiles128"}, {CudaExpertPath::kCublas, "cublas"},
};

// Mean rows per expert up to which each path is chosen (a first guess from the cost model in
// kernels/cuda/README.md, to be set from `bench_kernels --paths all` on the GPU).
constexpr int64_t kStreamingMaxRows = 16;  // the streaming kernels take 16 rows per pass over the weights
constexpr int64_t kTiles32MaxRows = 48;
constexpr int64_t kTiles64MaxRows = 96;
constexpr int64_t kTiles128MaxRows = 255;  // from 256 rows per expert on: cuBLAS (wgmma inside)

}  // namespace

std::string_view to_string(CudaExpertPath path) {
  for (const auto& p : kPathNames) {
    if (p.path == path) return p.name;
  }
  return "unknown";
}

std::optional<CudaExpertPath> parse_cuda_expert_path(std::string_view name) {
  for (const auto& p : kPathNames) {
    if (p.name == name) return p.path;
  }
  return std::nullopt;
}

CudaExpertPath auto_expert_path(int64_t num_assignments, int64_t experts_with_rows) {
  const int64_t experts = std::max<int64_t>(1, std::min(num_assignments, experts_with_rows));
  const int64_t mean_rows = (num_assignments + experts - 1) / experts;
  if (mean_rows <= kStreamingMaxRows) return CudaExpertPath::kStreaming;
  if (mean_rows <= kTiles32MaxRows) return CudaExpertPath::kTiles32;
  if (mean_rows <= kTiles64MaxRows) return CudaExpertPath::kTiles64;
  if (mean_rows <= kTiles128MaxRows) return CudaExpertPath::kTiles128;
  return CudaExpertPath::kCublas;
}

}  // namespace moe
