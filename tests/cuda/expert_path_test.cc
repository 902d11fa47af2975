// The CUDA backend's path names and kAuto's rule (host code: runs without a GPU).
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "kernels/cuda/cuda_backend.h"

namespace moe {
namespace {

TEST(CudaExpertPathNames, RoundTripEveryPath) {
  for (CudaExpertPath path : {CudaExpertPath::kAuto, CudaExpertPath::kStreaming, CudaExpertPath::kTiles32,
                              CudaExpertPath::kTiles64, CudaExpertPath::kTiles128, CudaExpertPath::kCublas}) {
    const auto parsed = parse_cuda_expert_path(to_string(path));
    ASSERT_TRUE(parsed.has_value()) << to_string(path);
    EXPECT_EQ(*parsed, path);
  }
}

TEST(CudaExpertPathNames, RejectsUnknownNames) {
  EXPECT_FALSE(parse_cuda_expert_path("").has_value());
  EXPECT_FALSE(parse_cuda_expert_path("tiles16").has_value());
  EXPECT_FALSE(parse_cuda_expert_path("CUBLAS").has_value());
}

TEST(CudaAutoExpertPath, ChoosesByMeanRowsPerExpert) {
  // Decode of every shape of the benchmark: T <= 16 tokens give at most 16 rows per expert.
  EXPECT_EQ(auto_expert_path(1 * 2, 8), CudaExpertPath::kStreaming);
  EXPECT_EQ(auto_expert_path(16 * 2, 8), CudaExpertPath::kStreaming);  // 4 rows per expert
  EXPECT_EQ(auto_expert_path(16 * 8, 256), CudaExpertPath::kStreaming);
  // DeepSeek-V3 T=128 (4 rows per expert) stays on the streaming path; T=1024 (32) takes 32-row tiles.
  EXPECT_EQ(auto_expert_path(128 * 8, 256), CudaExpertPath::kStreaming);
  EXPECT_EQ(auto_expert_path(1024 * 8, 256), CudaExpertPath::kTiles32);
  // Qwen3 T=1024: 64 rows per expert; DeepSeek T=4096: 128; Mixtral T=1024: 256.
  EXPECT_EQ(auto_expert_path(1024 * 8, 128), CudaExpertPath::kTiles64);
  EXPECT_EQ(auto_expert_path(4096 * 8, 256), CudaExpertPath::kTiles128);
  EXPECT_EQ(auto_expert_path(1024 * 2, 8), CudaExpertPath::kCublas);
  EXPECT_EQ(auto_expert_path(16384 * 8, 256), CudaExpertPath::kCublas);
}

TEST(CudaAutoExpertPath, CountsOnlyExpertsThatCanHaveRows) {
  // 10 assignments over 1000 loaded experts: at most 10 experts have rows, 1 row each.
  EXPECT_EQ(auto_expert_path(10, 1000), CudaExpertPath::kStreaming);
  // All rows on one expert.
  EXPECT_EQ(auto_expert_path(40, 1), CudaExpertPath::kTiles32);
  EXPECT_EQ(auto_expert_path(0, 0), CudaExpertPath::kStreaming);
}

}  // namespace
}  // namespace moe

namespace moe {
namespace {

bool has(const std::vector<CudaExpertPath>& paths, CudaExpertPath p) {
  return std::find(paths.begin(), paths.end(), p) != paths.end();
}

TEST(CudaAutoPathCandidates, RuleFirstThenThePlausibleOthers) {
  // Decode: one row per expert, nothing to measure.
  EXPECT_EQ(auto_path_candidates(1 * 8, 256), std::vector<CudaExpertPath>{CudaExpertPath::kStreaming});
  // DeepSeek T=1024 (32 rows per expert): the rule's tiles32 first; streaming and tiles64 also timed.
  const auto mid = auto_path_candidates(1024 * 8, 256);
  ASSERT_FALSE(mid.empty());
  EXPECT_EQ(mid.front(), CudaExpertPath::kTiles32);
  EXPECT_TRUE(has(mid, CudaExpertPath::kStreaming));
  EXPECT_TRUE(has(mid, CudaExpertPath::kTiles64));
  EXPECT_FALSE(has(mid, CudaExpertPath::kCublas));
  // Mixtral T=16384 (4096 rows per expert): cuBLAS and the 128-row tiles, not the streaming kernels.
  const auto big = auto_path_candidates(16384 * 2, 8);
  EXPECT_EQ(big.front(), CudaExpertPath::kCublas);
  EXPECT_TRUE(has(big, CudaExpertPath::kTiles128));
  EXPECT_FALSE(has(big, CudaExpertPath::kStreaming));
  EXPECT_FALSE(has(big, CudaExpertPath::kTiles32));
  for (const auto& paths : {mid, big}) {  // no path twice
    for (CudaExpertPath p : paths) EXPECT_EQ(std::count(paths.begin(), paths.end(), p), 1);
  }
}

TEST(CudaAutoPathCandidates, SizeClassIsTheBitWidthOfTheMeanRows) {
  EXPECT_EQ(auto_size_class(8, 256), 1);      // 1 row per expert
  EXPECT_EQ(auto_size_class(1024, 256), 3);   // 4
  EXPECT_EQ(auto_size_class(1016, 256), 3);   // 3.97 -> 4 (rounded up)
  EXPECT_EQ(auto_size_class(8192, 256), 6);   // 32
  EXPECT_EQ(auto_size_class(32768, 8), 13);   // 4096
}

}  // namespace
}  // namespace moe
