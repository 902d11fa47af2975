// Names of the CUDA backend's expert paths and kAuto's rule for picking one (cuda_backend.h).
#include <algorithm>
#include <bit>
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

namespace {

int64_t mean_rows_per_expert(int64_t num_assignments, int64_t experts_with_rows) {
  const int64_t experts = std::max<int64_t>(1, std::min(num_assignments, experts_with_rows));
  return (num_assignments + experts - 1) / experts;
}

}  // namespace

CudaExpertPath auto_expert_path(int64_t num_assignments, int64_t experts_with_rows) {
  const int64_t mean_rows = mean_rows_per_expert(num_assignments, experts_with_rows);
  if (mean_rows <= kStreamingMaxRows) return CudaExpertPath::kStreaming;
  if (mean_rows <= kTiles32MaxRows) return CudaExpertPath::kTiles32;
  if (mean_rows <= kTiles64MaxRows) return CudaExpertPath::kTiles64;
  if (mean_rows <= kTiles128MaxRows) return CudaExpertPath::kTiles128;
  return CudaExpertPath::kCublas;
}

std::vector<CudaExpertPath> auto_path_candidates(int64_t num_assignments, int64_t experts_with_rows) {
  const int64_t m = mean_rows_per_expert(num_assignments, experts_with_rows);
  // Each path where it can plausibly win: streaming re-reads the weights per 16 rows, small tiles
  // waste little below their size, cuBLAS pays a host sync and a launch per expert.
  std::vector<CudaExpertPath> out = {auto_expert_path(num_assignments, experts_with_rows)};
  auto consider = [&](CudaExpertPath path, bool plausible) {
    if (plausible && std::find(out.begin(), out.end(), path) == out.end()) out.push_back(path);
  };
  consider(CudaExpertPath::kStreaming, m <= 64);
  consider(CudaExpertPath::kTiles32, m > 4 && m <= 256);
  consider(CudaExpertPath::kTiles64, m > 16 && m <= 1024);
  consider(CudaExpertPath::kTiles128, m > 32);
  consider(CudaExpertPath::kCublas, m >= 64);
  return out;
}

int auto_size_class(int64_t num_assignments, int64_t experts_with_rows) {
  return std::bit_width(static_cast<uint64_t>(mean_rows_per_expert(num_assignments, experts_with_rows)));
}

}  // namespace moe
