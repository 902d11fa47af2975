// CpuBackend::forward against the double-precision reference: shapes that are and are not multiples
// of the vector width, both compute paths (streaming kernels and sgemm), experts with no tokens, tokens
// with several experts, F32/BF16/F16 weights, a shared expert of another size; plus bookkeeping
// (load/unload/has_expert/resident_bytes) and determinism under concurrent calls.
#include "kernels/cpu/cpu_backend.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>
#include <tuple>
#include <thread>
#include <vector>

#include "tests/unit/kernels/reference_expert.h"

namespace moe {
namespace {

using test::RandomExpert;

struct Case {
  const char* name;
  int64_t hidden, inter, shared_inter;  // shared_inter 0: no shared expert
  int experts, top_k;
  int64_t tokens;
  DType dtype;
  int max_streaming_tokens;  // 0: every expert through sgemm
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class CpuBackendForward : public ::testing::TestWithParam<std::tuple<Case, CpuKernel>> {};

// Kernels amx and avx512bf16 only where the CPU has them; blas everywhere.
#define SKIP_WITHOUT(kernel)                                                                              \
  if (((kernel) == CpuKernel::Amx && !amx_available()) ||                                                 \
      ((kernel) == CpuKernel::Avx512Bf16 && !avx512bf16_available()))                                     \
  GTEST_SKIP() << "no " << cpu_kernel_name(kernel) << " on this CPU"

TEST_P(CpuBackendForward, MatchesDoubleReference) {
  const Case c = std::get<0>(GetParam());
  const CpuKernel kernel = std::get<1>(GetParam());
  SKIP_WITHOUT(kernel);
  std::mt19937 rng(1234);
  std::vector<RandomExpert> owned;
  for (int e = 0; e < c.experts; ++e) owned.emplace_back(c.dtype, c.hidden, c.inter, rng);
  if (c.shared_inter > 0) owned.emplace_back(c.dtype, c.hidden, c.shared_inter, rng);
  std::vector<const RandomExpert*> experts;
  for (auto& e : owned) experts.push_back(&e);

  CpuBackend backend(
      CpuBackendOptions{.threads = 2, .max_streaming_tokens = c.max_streaming_tokens, .kernel = kernel});
  ASSERT_EQ(backend.kernel(), kernel);
  for (size_t e = 0; e < owned.size(); ++e) backend.load_expert({3, static_cast<int32_t>(e)}, owned[e].view());

  // Routing: distinct experts per token from the first half of the ids (so the others get no token);
  // token 0 goes to every expert of that half, the shared one gets every token, and the last
  // token's first expert is named twice (its contributions add up).
  std::vector<TokenAssignment> assignments;
  std::uniform_real_distribution<float> weight(0.1f, 1.f);
  const int routed_pool = std::max(c.top_k, c.experts / 2);
  for (int64_t t = 0; t < c.tokens; ++t) {
    std::vector<int32_t> ids(static_cast<size_t>(routed_pool));
    for (int i = 0; i < routed_pool; ++i) ids[static_cast<size_t>(i)] = i;
    std::shuffle(ids.begin(), ids.end(), rng);
    const int k = t == 0 ? routed_pool : c.top_k;
    for (int i = 0; i < k; ++i)
      assignments.push_back({static_cast<int32_t>(t), t == 0 ? i : ids[static_cast<size_t>(i)], weight(rng)});
    if (c.shared_inter > 0) assignments.push_back({static_cast<int32_t>(t), c.experts, 1.f});
  }
  if (c.tokens > 1) assignments.push_back(assignments[assignments.size() - 1 - (c.shared_inter > 0 ? 1 : 0)]);
  std::shuffle(assignments.begin(), assignments.end(), rng);

  // One more token row that no assignment names must come back zero.
  const int64_t rows = c.tokens + 1;
  const std::vector<float> x = test::random_tokens(rows, c.hidden, rng);
  std::vector<float> out(static_cast<size_t>(rows * c.hidden), 123.f);
  backend.forward(3, x.data(), rows, c.hidden, assignments, out.data());
  const std::vector<double> ref = test::reference_forward(experts, x.data(), rows, c.hidden, assignments);

  double max_ref = 0;
  for (double v : ref) max_ref = std::max(max_ref, std::abs(v));
  ASSERT_GT(max_ref, 1e-3) << "reference output is degenerate";
  const double tolerance = 2e-5 * max_ref + 1e-6;
  for (int64_t t = 0; t < rows; ++t)
    for (int64_t h = 0; h < c.hidden; ++h) {
      const size_t i = static_cast<size_t>(t * c.hidden + h);
      ASSERT_NEAR(out[i], ref[i], tolerance) << "token " << t << ", column " << h;
    }
  for (int64_t h = 0; h < c.hidden; ++h) EXPECT_EQ(out[static_cast<size_t>(c.tokens * c.hidden + h)], 0.f);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CpuBackendForward,
    ::testing::Combine(::testing::Values(Case{"f32_64x128_streaming", 64, 128, 0, 4, 2, 5, DType::F32, 24},
                      Case{"f32_64x128_sgemm", 64, 128, 0, 4, 2, 5, DType::F32, 0},
                      Case{"f32_odd_37x53_streaming", 37, 53, 0, 6, 2, 9, DType::F32, 24},
                      Case{"f32_odd_37x53_sgemm", 37, 53, 0, 6, 2, 9, DType::F32, 0},
                      Case{"f32_odd_33x70_mixed_paths", 33, 70, 0, 8, 2, 12, DType::F32, 6},
                      Case{"f32_many_tokens_streaming", 48, 96, 0, 8, 2, 100, DType::F32, 64},
                      Case{"bf16_80x144_shared_96", 80, 144, 96, 8, 2, 12, DType::BF16, 24},
                      Case{"f16_48x100_shared_72", 48, 100, 72, 4, 1, 7, DType::F16, 24},
                      Case{"f16_48x100_shared_72_sgemm", 48, 100, 72, 4, 1, 7, DType::F16, 0},
                      Case{"f32_single_token", 128, 256, 0, 8, 2, 1, DType::F32, 24},
                      Case{"f32_wide_hidden_1_column", 1, 3, 0, 2, 1, 3, DType::F32, 24},
                      Case{"bf16_tokens_past_tile_70", 64, 96, 0, 4, 2, 70, DType::BF16, 24},
                      Case{"f32_tokens_past_tile_33", 70, 40, 0, 3, 2, 33, DType::F32, 0}),
                       ::testing::Values(CpuKernel::Blas, CpuKernel::Amx, CpuKernel::Avx512Bf16)),
    [](const ::testing::TestParamInfo<std::tuple<Case, CpuKernel>>& info) {
      return std::string(std::get<0>(info.param).name) + "_" + cpu_kernel_name(std::get<1>(info.param));
    });

TEST(CpuBackend, ZeroTokensAndNoAssignmentsLeaveZeroOutput) {
  std::mt19937 rng(7);
  RandomExpert e(DType::F32, 16, 32, rng);
  CpuBackend backend;
  backend.load_expert({0, 0}, e.view());
  backend.forward(0, nullptr, 0, 16, {}, nullptr);
  std::vector<float> x = test::random_tokens(3, 16, rng), out(48, 5.f);
  backend.forward(0, x.data(), 3, 16, {}, out.data());
  for (float v : out) EXPECT_EQ(v, 0.f);
}

TEST(CpuBackend, OutputMayOverwriteTheInputBuffer) {
  std::mt19937 rng(8);
  RandomExpert a(DType::F32, 24, 40, rng), b(DType::F32, 24, 40, rng);
  CpuBackend backend(CpuBackendOptions{.threads = 2, .max_streaming_tokens = 2});  // both paths
  backend.load_expert({0, 0}, a.view());
  backend.load_expert({0, 1}, b.view());
  std::vector<TokenAssignment> assignments{{0, 0, 0.5f}, {1, 0, 1.f}, {2, 0, 1.f}, {2, 1, 0.25f}};
  std::vector<float> x = test::random_tokens(3, 24, rng), separate(72);
  backend.forward(0, x.data(), 3, 24, assignments, separate.data());
  backend.forward(0, x.data(), 3, 24, assignments, x.data());
  EXPECT_EQ(x, separate);
}

TEST(CpuBackend, LoadUnloadHasExpertAndResidentBytes) {
  std::mt19937 rng(9);
  RandomExpert small(DType::BF16, 16, 24, rng), large(DType::F32, 16, 40, rng);
  CpuBackend backend(CpuBackendOptions{.kernel = CpuKernel::Blas});
  EXPECT_EQ(backend.name(), "cpu");
  EXPECT_EQ(backend.resident_bytes(), 0u);
  EXPECT_FALSE(backend.has_expert({1, 0}));
  backend.load_expert({1, 0}, small.view());
  backend.load_expert({1, 1}, large.view());
  const size_t small_bytes = 3 * 16 * 24 * sizeof(float), large_bytes = 3 * 16 * 40 * sizeof(float);
  EXPECT_TRUE(backend.has_expert({1, 0}));
  EXPECT_TRUE(backend.has_expert({1, 1}));
  EXPECT_FALSE(backend.has_expert({0, 0}));  // same expert id, other layer
  EXPECT_EQ(backend.resident_bytes(), small_bytes + large_bytes);

  backend.load_expert({1, 0}, large.view());  // reload replaces, never double counts
  EXPECT_EQ(backend.resident_bytes(), 2 * large_bytes);

  backend.unload_expert({1, 0});
  EXPECT_FALSE(backend.has_expert({1, 0}));
  EXPECT_EQ(backend.resident_bytes(), large_bytes);
  backend.unload_expert({1, 0});  // unloading what is not there is a no-op
  backend.unload_expert({1, 1});
  EXPECT_EQ(backend.resident_bytes(), 0u);
}

// Kernels amx and avx512bf16 keep bf16 weights as bf16 (half the bytes of f32) and f32 weights in two bf16 planes
// (the bytes of f32); shapes here are multiples of the tiles, so there is no padding.
class CpuBackendPacked : public ::testing::TestWithParam<CpuKernel> {};

TEST_P(CpuBackendPacked, KeepsBf16WeightsAtTwoBytes) {
  SKIP_WITHOUT(GetParam());
  std::mt19937 rng(10);
  RandomExpert bf16(DType::BF16, 64, 96, rng), f32(DType::F32, 64, 96, rng);
  CpuBackend backend(CpuBackendOptions{.kernel = GetParam()});
  backend.load_expert({0, 0}, bf16.view());
  EXPECT_EQ(backend.resident_bytes(), 3u * 64 * 96 * 2);
  backend.load_expert({0, 1}, f32.view());
  EXPECT_EQ(backend.resident_bytes(), 3u * 64 * 96 * 2 + 3u * 64 * 96 * 4);
}

INSTANTIATE_TEST_SUITE_P(Kernels, CpuBackendPacked, ::testing::Values(CpuKernel::Amx, CpuKernel::Avx512Bf16),
                         [](const ::testing::TestParamInfo<CpuKernel>& info) { return cpu_kernel_name(info.param); });

TEST(CpuBackend, KernelNamesParseAndAmxIsRefusedWhereAbsent) {
  EXPECT_EQ(parse_cpu_kernel("amx"), CpuKernel::Amx);
  EXPECT_EQ(parse_cpu_kernel("blas"), CpuKernel::Blas);
  EXPECT_EQ(parse_cpu_kernel("auto"), CpuKernel::Auto);
  EXPECT_EQ(parse_cpu_kernel("avx512bf16"), CpuKernel::Avx512Bf16);
  if (!avx512bf16_available()) EXPECT_THROW(CpuBackend(CpuBackendOptions{.kernel = CpuKernel::Avx512Bf16}), std::invalid_argument);
  try {
    parse_cpu_kernel("avx");
    FAIL() << "no throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'avx'"), std::string::npos) << e.what();
  }
  if (amx_available()) {
    EXPECT_EQ(CpuBackend(CpuBackendOptions{}).kernel(), CpuKernel::Amx);
  } else {
    EXPECT_THROW(CpuBackend(CpuBackendOptions{.kernel = CpuKernel::Amx}), std::invalid_argument);
    EXPECT_EQ(CpuBackend(CpuBackendOptions{}).kernel(), CpuKernel::Blas);
  }
}

TEST(CpuBackend, ReloadedExpertComputesWithItsNewWeights) {
  std::mt19937 rng(11);
  RandomExpert first(DType::F32, 24, 40, rng), second(DType::F32, 24, 40, rng);
  CpuBackend backend;
  std::vector<float> x = test::random_tokens(1, 24, rng), out(24);
  const TokenAssignment a{0, 0, 1.f};
  backend.load_expert({0, 0}, first.view());
  backend.load_expert({0, 0}, second.view());
  backend.forward(0, x.data(), 1, 24, {&a, 1}, out.data());
  std::vector<double> ref(24, 0.0);
  second.accumulate(x.data(), 1.0, ref.data());
  for (int h = 0; h < 24; ++h) EXPECT_NEAR(out[static_cast<size_t>(h)], ref[static_cast<size_t>(h)], 1e-5);
}

TEST(CpuBackend, ConcurrentForwardFromFourThreadsIsIdentical) {
  std::mt19937 rng(21);
  const int64_t hidden = 96, inter = 160, tokens = 40;
  std::vector<RandomExpert> experts;
  for (int e = 0; e < 6; ++e) experts.emplace_back(DType::F32, hidden, inter, rng);
  // Streaming kernels for small groups and sgemm for the big one, in the same calls.
  CpuBackend backend(CpuBackendOptions{.threads = 2, .max_streaming_tokens = 8});
  for (int e = 0; e < 6; ++e) backend.load_expert({0, e}, experts[static_cast<size_t>(e)].view());
  std::vector<TokenAssignment> assignments;
  for (int32_t t = 0; t < tokens; ++t) {
    assignments.push_back({t, 0, 0.5f});                     // expert 0: 40 tokens (sgemm)
    assignments.push_back({t, 1 + t % 5, 0.25f + 0.01f * t});  // experts 1..5: 8 tokens each
  }
  const std::vector<float> x = test::random_tokens(tokens, hidden, rng);
  std::vector<float> expected(static_cast<size_t>(tokens * hidden));
  backend.forward(0, x.data(), tokens, hidden, assignments, expected.data());

  std::vector<std::vector<float>> outs(4, std::vector<float>(expected.size()));
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&, i] {
      for (int rep = 0; rep < 5; ++rep) {
        backend.forward(0, x.data(), tokens, hidden, assignments, outs[static_cast<size_t>(i)].data());
        if (outs[static_cast<size_t>(i)] != expected) ++mismatches[static_cast<size_t>(i)];
      }
    });
  for (auto& t : threads) t.join();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(mismatches[static_cast<size_t>(i)], 0) << "thread " << i;
}

TEST(CpuBackend, MakeCpuBackendGivesAWorkingBackend) {
  std::mt19937 rng(5);
  RandomExpert e(DType::F32, 32, 48, rng);
  std::unique_ptr<ExpertBackend> backend = make_cpu_backend(2);
  backend->load_expert({2, 5}, e.view());
  std::vector<float> x = test::random_tokens(2, 32, rng), out(64);
  const TokenAssignment a[] = {{1, 5, 0.75f}};
  backend->forward(2, x.data(), 2, 32, a, out.data());
  std::vector<double> ref(32, 0.0);
  e.accumulate(x.data() + 32, 0.75, ref.data());
  for (int h = 0; h < 32; ++h) {
    EXPECT_EQ(out[static_cast<size_t>(h)], 0.f);
    EXPECT_NEAR(out[static_cast<size_t>(32 + h)], ref[static_cast<size_t>(h)], 1e-5);
  }
}

}  // namespace
}  // namespace moe
