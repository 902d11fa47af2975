// CudaBackend::forward_rows, the deterministic mode on the GPU: a probe token's rows are the same bits
// in batches of many sizes (shuffled assignments, other tokens random) as alone, and each row is its
// assignment's weighted output (close to the double reference). Skips without a CUDA device: written
// without one, it has not run yet.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <random>
#include <vector>

#include "kernels/cuda/cuda_backend.h"
#include "tests/cuda/cuda_test_device.h"
#include "tests/cuda/moe_problem.h"

namespace moe {
namespace {

using cuda_test::TestExpert;

TEST(CudaForwardRows, ProbeRowsAreTheSameBitsInEveryBatch) {
  MOE_SKIP_WITHOUT_CUDA_DEVICE();
  const uint64_t seed = cuda_test::test_seed();
  SCOPED_TRACE("MOE_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const int64_t hidden = 256, inter = 192;
  const int experts = 6;
  std::map<int32_t, TestExpert> weights;
  auto backend = make_cuda_backend(0);
  for (int e = 0; e < experts; ++e) {
    weights.emplace(e, cuda_test::random_expert(hidden, inter, DType::BF16, rng));
    backend->load_expert({0, e}, weights.at(e).view());
  }
  const std::vector<float> probe = cuda_test::random_activations(1, hidden, rng);
  std::vector<TokenAssignment> solo;
  for (int e = 0; e < experts; ++e) solo.push_back({0, e, 0.1f + 0.15f * static_cast<float>(e)});
  std::vector<float> solo_rows(solo.size() * hidden);
  backend->forward_rows(0, probe.data(), 1, hidden, solo, solo_rows.data());

  // Each row against the double reference (one assignment alone = one token's layer output).
  for (size_t a = 0; a < solo.size(); ++a) {
    const std::vector<TokenAssignment> one{solo[a]};
    const auto ref = cuda_test::reference_rows(weights, probe, hidden, one, {0});
    const std::vector<float> got(solo_rows.begin() + static_cast<int64_t>(a) * hidden,
                                 solo_rows.begin() + static_cast<int64_t>(a + 1) * hidden);
    const cuda_test::Comparison c = cuda_test::compare_rows(got, hidden, {0}, ref);
    EXPECT_LT(c.relative_error, 2e-2) << "expert " << a << ": " << c.describe();
  }

  for (int64_t tokens : {2, 17, 100, 1000}) {
    std::vector<float> x = cuda_test::random_activations(tokens, hidden, rng);
    const int64_t at = static_cast<int64_t>(rng() % static_cast<uint64_t>(tokens));
    std::copy(probe.begin(), probe.end(), x.begin() + at * hidden);
    std::vector<TokenAssignment> assignments;
    for (int64_t t = 0; t < tokens; ++t) {
      if (t == at) {
        for (const TokenAssignment& a : solo) assignments.push_back({static_cast<int32_t>(t), a.expert, a.weight});
        continue;
      }
      const int32_t e1 = static_cast<int32_t>(rng() % 2), e2 = 2 + static_cast<int32_t>(rng() % (experts - 2));
      assignments.push_back({static_cast<int32_t>(t), e1, 0.5f});
      assignments.push_back({static_cast<int32_t>(t), e2, 0.5f});
    }
    std::shuffle(assignments.begin(), assignments.end(), rng);
    std::vector<float> rows(assignments.size() * hidden);
    backend->forward_rows(0, x.data(), tokens, hidden, assignments, rows.data());
    for (size_t a = 0; a < assignments.size(); ++a) {
      if (assignments[a].token != at) continue;
      const size_t e = static_cast<size_t>(assignments[a].expert);
      ASSERT_EQ(0, std::memcmp(rows.data() + a * hidden, solo_rows.data() + e * hidden, hidden * sizeof(float)))
          << "probe row of expert " << e << " in a batch of " << tokens << " tokens differs from its solo row";
    }
  }
}

}  // namespace
}  // namespace moe
