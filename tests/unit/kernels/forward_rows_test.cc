// CpuBackend::forward_rows, the deterministic mode's entry point: a probe token's rows are the same
// bits in every batch (sizes across the default mode's streaming/sgemm switch, the 256-token streaming pieces
// and odd AMX token blocks; random other tokens; shuffled assignment order; 2 threads) as when it runs
// alone on 1 thread, on every kernel this CPU has, for f32 and bf16 weights and for an expert with
// biases (never packed). Also: the
// rows are the weighted outputs (close to the reference), and forward_rows checks its input like forward.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <stdexcept>
#include <tuple>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "tests/unit/kernels/reference_expert.h"

namespace moe {
namespace {

using test::RandomExpert;

class ForwardRows : public ::testing::TestWithParam<std::tuple<CpuKernel, DType>> {};

// Biases on an expert keep it off the packed (AMX) path: the streaming kernels run it on every kernel.
struct Biases {
  std::vector<float> gate, up, down;
  Biases(int64_t hidden, int64_t inter, std::mt19937& rng) {
    std::uniform_real_distribution<float> uni(-0.1f, 0.1f);
    for (int64_t i = 0; i < inter; ++i) gate.push_back(uni(rng)), up.push_back(uni(rng));
    for (int64_t h = 0; h < hidden; ++h) down.push_back(uni(rng));
  }
};

TEST_P(ForwardRows, ProbeRowsAreTheSameBitsInEveryBatch) {
  const auto [kernel, dtype] = GetParam();
  if ((kernel == CpuKernel::Amx && !amx_available()) || (kernel == CpuKernel::Avx512Bf16 && !avx512bf16_available()))
    GTEST_SKIP() << "no " << cpu_kernel_name(kernel) << " on this CPU";
  const int64_t hidden = 200, inter = 136;  // not multiples of 16 or 32: the kernels' tails run too
  const int experts = 5;
  std::mt19937 rng(7);
  std::vector<RandomExpert> owned;
  for (int e = 0; e < experts; ++e) owned.emplace_back(dtype, hidden, inter, rng);
  Biases biases(hidden, inter, rng);
  auto load = [&](CpuBackend& backend) {
    for (int e = 0; e < experts; ++e) {
      ExpertWeightsView v = owned[static_cast<size_t>(e)].view();
      if (e == experts - 1) {  // the biased one
        v.gate_bias = {DType::F32, biases.gate.data(), inter};
        v.up_bias = {DType::F32, biases.up.data(), inter};
        v.down_bias = {DType::F32, biases.down.data(), hidden};
      }
      backend.load_expert({0, e}, v);
    }
  };

  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> probe(static_cast<size_t>(hidden));
  for (float& v : probe) v = normal(rng);
  // The probe goes to every expert with its own weight.
  std::vector<TokenAssignment> solo;
  for (int e = 0; e < experts; ++e) solo.push_back({0, e, 0.1f + 0.2f * static_cast<float>(e)});
  // The solo rows on one thread (a worker may run with another thread count than the client's engine),
  // the batches on two (OpenBLAS's thread count is process-wide: the last backend made sets it).
  std::vector<float> solo_rows(solo.size() * static_cast<size_t>(hidden));
  {
    CpuBackend one_thread(CpuBackendOptions{.threads = 1, .kernel = kernel});
    load(one_thread);
    one_thread.forward_rows(0, probe.data(), 1, hidden, solo, solo_rows.data());
  }
  CpuBackend backend(CpuBackendOptions{.threads = 2, .kernel = kernel});
  load(backend);

  for (int64_t tokens : {2, 3, 17, 33, 49, 64, 65, 97, 130, 257, 600}) {
    std::vector<float> x(static_cast<size_t>(tokens * hidden));
    for (float& v : x) v = normal(rng);
    const int64_t at = std::uniform_int_distribution<int64_t>(0, tokens - 1)(rng);
    std::copy(probe.begin(), probe.end(), x.begin() + at * hidden);
    std::vector<TokenAssignment> assignments;
    std::vector<size_t> probe_index;  // assignment index of the probe's expert e
    std::uniform_int_distribution<int> pick(0, experts - 1);
    for (int64_t t = 0; t < tokens; ++t) {
      if (t == at) {
        for (const TokenAssignment& a : solo) assignments.push_back({static_cast<int32_t>(t), a.expert, a.weight});
        continue;
      }
      // Every other token on two experts, most on the first ones (so some groups are large).
      const int e1 = pick(rng) % 2, e2 = 2 + pick(rng) % (experts - 2);
      assignments.push_back({static_cast<int32_t>(t), e1, 0.6f});
      assignments.push_back({static_cast<int32_t>(t), e2, 0.4f});
    }
    std::shuffle(assignments.begin(), assignments.end(), rng);
    std::vector<float> rows(assignments.size() * static_cast<size_t>(hidden), -1.f);
    backend.forward_rows(0, x.data(), tokens, hidden, assignments, rows.data());
    int checked = 0;
    for (size_t a = 0; a < assignments.size(); ++a) {
      if (assignments[a].token != at) continue;
      const size_t e = static_cast<size_t>(assignments[a].expert);
      ASSERT_EQ(0, std::memcmp(rows.data() + a * hidden, solo_rows.data() + e * hidden, hidden * sizeof(float)))
          << cpu_kernel_name(kernel) << " " << dtype_name(dtype) << ": probe row of expert " << e << " in a batch of "
          << tokens << " tokens differs from its solo row";
      ++checked;
    }
    EXPECT_EQ(checked, experts);
  }
}

TEST_P(ForwardRows, RowsAreTheWeightedOutputs) {
  const auto [kernel, dtype] = GetParam();
  if ((kernel == CpuKernel::Amx && !amx_available()) || (kernel == CpuKernel::Avx512Bf16 && !avx512bf16_available()))
    GTEST_SKIP() << "no " << cpu_kernel_name(kernel) << " on this CPU";
  const int64_t hidden = 96, inter = 64;
  std::mt19937 rng(3);
  std::vector<RandomExpert> owned;
  for (int e = 0; e < 3; ++e) owned.emplace_back(dtype, hidden, inter, rng);
  CpuBackend backend(CpuBackendOptions{.threads = 2, .kernel = kernel});
  for (int e = 0; e < 3; ++e) backend.load_expert({1, e}, owned[static_cast<size_t>(e)].view());
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> x(static_cast<size_t>(4 * hidden));
  for (float& v : x) v = normal(rng);
  const std::vector<TokenAssignment> assignments{{0, 2, 0.25f}, {3, 0, 0.5f}, {1, 1, 1.f}, {0, 0, 0.75f}};
  std::vector<float> rows(assignments.size() * hidden);
  backend.forward_rows(1, x.data(), 4, hidden, assignments, rows.data());
  for (size_t a = 0; a < assignments.size(); ++a) {
    std::vector<double> want(static_cast<size_t>(hidden), 0.0);
    owned[static_cast<size_t>(assignments[a].expert)].accumulate(x.data() + assignments[a].token * hidden,
                                                                  assignments[a].weight, want.data());
    for (int64_t h = 0; h < hidden; ++h)
      ASSERT_NEAR(rows[a * hidden + h], want[static_cast<size_t>(h)], 1e-4 + 1e-4 * std::abs(want[static_cast<size_t>(h)]))
          << "assignment " << a << " column " << h;
  }
}

INSTANTIATE_TEST_SUITE_P(Kernels, ForwardRows,
                         ::testing::Combine(::testing::Values(CpuKernel::Blas, CpuKernel::Amx, CpuKernel::Avx512Bf16),
                                            ::testing::Values(DType::F32, DType::BF16)));

TEST(ForwardRowsErrors, NamesTheUnloadedExpertAndTheBadToken) {
  CpuBackend backend(CpuBackendOptions{.threads = 1, .kernel = CpuKernel::Blas});
  std::mt19937 rng(1);
  RandomExpert e(DType::F32, 32, 16, rng);
  backend.load_expert({0, 0}, e.view());
  std::vector<float> x(64), rows(64);
  const std::vector<TokenAssignment> unloaded{{0, 4, 1.f}};
  try {
    backend.forward_rows(0, x.data(), 2, 32, unloaded, rows.data());
    FAIL() << "expected invalid_argument";
  } catch (const std::invalid_argument& err) {
    EXPECT_NE(std::string(err.what()).find("expert 4"), std::string::npos) << err.what();
    EXPECT_NE(std::string(err.what()).find("forward_rows"), std::string::npos) << err.what();
  }
  const std::vector<TokenAssignment> bad_token{{2, 0, 1.f}};
  EXPECT_THROW(backend.forward_rows(0, x.data(), 2, 32, bad_token, rows.data()), std::invalid_argument);
}

}  // namespace
}  // namespace moe
