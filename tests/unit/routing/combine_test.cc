// combine_partial: scatter-add, accumulation over workers, and the errors it reports (output untouched).
#include "runtime/routing/combine.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <vector>

#include "runtime/routing/dispatch_plan.h"

namespace moe {
namespace {

TEST(Combine, AddsRowsIntoTheirTokens) {
  Matrix out(3, 2);
  out.data = {1, 1, 1, 1, 1, 1};
  const std::vector<int32_t> tokens = {2, 0};
  const std::vector<float> partial = {10, 20, 30, 40};
  combine_partial(tokens, partial, out);
  EXPECT_EQ(out.data, (std::vector<float>{31, 41, 1, 1, 11, 21}));
  combine_partial(tokens, partial, out);  // a second worker's partial for the same tokens adds up
  EXPECT_EQ(out.data, (std::vector<float>{61, 81, 1, 1, 21, 41}));
}

TEST(Combine, SizeMismatchThrowsAndLeavesOutputAlone) {
  Matrix out(2, 2);
  const std::vector<int32_t> tokens = {0, 1};
  const std::vector<float> partial = {1, 2, 3};
  EXPECT_THROW(combine_partial(tokens, partial, out), std::invalid_argument);
  EXPECT_EQ(out.data, (std::vector<float>{0, 0, 0, 0}));
}

TEST(Combine, TokenOutOfRangeThrowsAndLeavesOutputAlone) {
  Matrix out(2, 1);
  const std::vector<float> partial = {5, 6};
  EXPECT_THROW(combine_partial(std::vector<int32_t>{0, 2}, partial, out), std::invalid_argument);
  EXPECT_THROW(combine_partial(std::vector<int32_t>{-1, 0}, partial, out), std::invalid_argument);
  EXPECT_EQ(out.data, (std::vector<float>{0, 0}));
}

TEST(Combine, PlanThenCombineEqualsTheDirectWeightedSum) {
  // A toy expert e maps x to (e + 1) * x. Each worker returns, per token of its shard, the weighted sum
  // over its assignments; combining all shards must give Σ_a w_a (e_a + 1) x[token_a].
  const int64_t T = 5, H = 3;
  Matrix x(T, H);
  for (size_t i = 0; i < x.data.size(); ++i) x.data[i] = static_cast<float>(i % 7) - 2.f;
  const std::vector<TokenAssignment> a = {{0, 0, 0.5f}, {0, 3, 0.5f}, {1, 1, 1.f}, {2, 2, 0.25f},
                                          {2, 0, 0.75f}, {4, 3, 2.f}, {4, 1, 1.f}};
  Matrix direct(T, H);
  for (const auto& s : a) {
    for (int64_t h = 0; h < H; ++h) direct.row(s.token)[h] += s.weight * (s.expert + 1) * x.row(s.token)[h];
  }
  const auto plan = plan_by_worker(a, [](size_t, const TokenAssignment& s) { return s.expert / 2; });
  Matrix out(T, H);
  for (const auto& [w, shard] : plan) {
    std::vector<float> partial(shard.tokens.size() * H, 0.f);
    for (const auto& s : shard.assignments) {
      const float* xr = x.row(shard.tokens[s.token]);
      for (int64_t h = 0; h < H; ++h) partial[s.token * H + h] += s.weight * (s.expert + 1) * xr[h];
    }
    combine_partial(shard.tokens, partial, out);
  }
  for (size_t i = 0; i < out.data.size(); ++i) EXPECT_FLOAT_EQ(out.data[i], direct.data[i]) << i;
}

}  // namespace
}  // namespace moe
