// select_topk: decreasing order, ties by lower index, NaN on top, agreement with a stable sort.
#include "runtime/routing/topk.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "tests/unit/routing/routing_test_util.h"

namespace moe {
namespace {

std::vector<int32_t> topk(const std::vector<float>& v, int32_t k) {
  std::vector<int32_t> ids(static_cast<size_t>(k), -1);
  select_topk(v.data(), static_cast<int32_t>(v.size()), k, ids.data());
  return ids;
}

TEST(SelectTopk, DecreasingOrder) {
  EXPECT_EQ(topk({0.1f, 0.7f, 0.3f, 0.9f, 0.2f}, 3), (std::vector<int32_t>{3, 1, 2}));
}

TEST(SelectTopk, KEqualsNSortsEverything) {
  EXPECT_EQ(topk({0.1f, 0.7f, 0.3f}, 3), (std::vector<int32_t>{1, 2, 0}));
}

TEST(SelectTopk, TiesGoToTheLowerIndexFirst) {
  EXPECT_EQ(topk({0.5f, 0.5f, 0.5f, 0.5f}, 2), (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(topk({0.1f, 0.5f, 0.9f, 0.5f, 0.5f}, 3), (std::vector<int32_t>{2, 1, 3}));
  // A tie at the cut: the later equal value does not displace the earlier one.
  EXPECT_EQ(topk({0.2f, 0.8f, 0.2f, 0.2f}, 2), (std::vector<int32_t>{1, 0}));
}

TEST(SelectTopk, NegativeValuesAndZeros) {
  EXPECT_EQ(topk({-0.5f, 0.f, -0.1f, 0.f}, 3), (std::vector<int32_t>{1, 3, 2}));
}

TEST(SelectTopk, NanRanksAboveNumbersAsInTorch) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(topk({0.3f, nan, 0.9f}, 2), (std::vector<int32_t>{1, 2}));
}

TEST(SelectTopk, MatchesAStableSortOnRandomRowsWithManyTies) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> level(0, 5);  // few distinct values: many ties
  for (int trial = 0; trial < 200; ++trial) {
    const int32_t n = 1 + trial % 40;
    const int32_t k = 1 + trial % n;
    std::vector<float> v(static_cast<size_t>(n));
    std::vector<double> vd(v.size());
    for (size_t i = 0; i < v.size(); ++i) vd[i] = v[i] = static_cast<float>(level(rng)) * 0.25f;
    EXPECT_EQ(topk(v, k), test::reference_topk(vd, k)) << "trial " << trial;
  }
}

}  // namespace
}  // namespace moe
