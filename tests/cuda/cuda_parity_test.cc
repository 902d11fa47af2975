// Parity of the CUDA backend with a double-precision reference on random problems, each run through
// every expert path (auto's pick, streaming, mma.sync tiles of 32/64/128 rows, cuBLAS): decode and
// prefill sizes, 256 experts top-8 up to T = 16384 (large T
// checked on a sample of rows), sizes that are not multiples of 16, experts without tokens, unloaded
// ids, duplicate (token, expert) pairs, experts of different intermediate sizes in one layer, f32/f16
// weights, and real DeepSeek-V3 expert sizes. bf16 tolerance: relative error <= 1e-2.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/cuda/cuda_backend.h"
#include "tests/cuda/cuda_test_device.h"
#include "tests/cuda/moe_problem.h"

#ifdef MOE_TEST_HAVE_CPU_BACKEND
#include "kernels/expert_backend.h"
#endif

namespace moe::cuda_test {
namespace {

constexpr double kTolerance = 1e-2;      // whole compared output, ||got - ref|| / ||ref||
constexpr double kRowTolerance = 3e-2;   // any single row

struct CaseSpec {
  std::string name;
  int64_t hidden = 0;
  int64_t inter = 0;
  int32_t num_experts = 0;
  int32_t top_k = 0;
  int64_t tokens = 0;
  DType dtype = DType::BF16;
  int64_t max_checked_rows = 256;
  std::vector<int32_t> not_loaded;  // ids never loaded (so never routed)
  std::vector<int32_t> idle;        // loaded, never routed
  double unrouted_fraction = 0;
  int duplicate_copies = 1;         // each assignment repeated this many times, weight split
  int64_t shared_inter = 0;         // > 0: expert id num_experts with this size, given every routed token
};

std::ostream& operator<<(std::ostream& os, const CaseSpec& c) { return os << c.name; }

struct Problem {
  std::map<int32_t, TestExpert> experts;
  std::vector<float> x;
  std::vector<TokenAssignment> assignments;
};

Problem make_problem(const CaseSpec& c, std::mt19937_64& rng) {
  Problem p;
  const std::set<int32_t> not_loaded(c.not_loaded.begin(), c.not_loaded.end());
  const std::set<int32_t> idle(c.idle.begin(), c.idle.end());
  RoutingSpec routing;
  routing.num_tokens = c.tokens;
  routing.top_k = c.top_k;
  routing.unrouted_fraction = c.unrouted_fraction;
  for (int32_t e = 0; e < c.num_experts; ++e) {
    if (not_loaded.count(e)) continue;
    p.experts.emplace(e, random_expert(c.hidden, c.inter, c.dtype, rng));
    if (!idle.count(e)) routing.candidates.push_back(e);
  }
  std::vector<TokenAssignment> routed = random_routing(routing, rng);
  if (c.shared_inter > 0) {
    const int32_t shared = c.num_experts;
    p.experts.emplace(shared, random_expert(c.hidden, c.shared_inter, c.dtype, rng));
    std::set<int32_t> tokens;
    for (const auto& a : routed) tokens.insert(a.token);
    for (int32_t t : tokens) routed.push_back({t, shared, 0.5f});
  }
  for (const auto& a : routed) {
    for (int copy = 0; copy < c.duplicate_copies; ++copy) {
      p.assignments.push_back({a.token, a.expert, a.weight / static_cast<float>(c.duplicate_copies)});
    }
  }
  std::shuffle(p.assignments.begin(), p.assignments.end(), rng);
  p.x = random_activations(c.tokens, c.hidden, rng);
  return p;
}

void load_all(ExpertBackend& backend, const Problem& p, int32_t layer) {
  for (const auto& [id, e] : p.experts) backend.load_expert({layer, id}, e.view());
}

// Runs the backend, checks every row is written (NaN poison) and rows without assignments are zero,
// and compares sampled rows with the reference.
void check_forward(ExpertBackend& backend, int32_t layer, const CaseSpec& c,
                   const std::map<int32_t, TestExpert>& experts, const std::vector<float>& x,
                   const std::vector<TokenAssignment>& assignments, std::mt19937_64& rng) {
  std::vector<float> out(static_cast<size_t>(c.tokens * c.hidden), std::numeric_limits<float>::quiet_NaN());
  backend.forward(layer, x.data(), c.tokens, c.hidden, assignments, out.data());

  std::vector<bool> routed(static_cast<size_t>(c.tokens), false);
  for (const auto& a : assignments) routed[static_cast<size_t>(a.token)] = true;
  int64_t nonfinite = 0, nonzero_unrouted = 0;
  for (int64_t t = 0; t < c.tokens; ++t) {
    for (int64_t j = 0; j < c.hidden; ++j) {
      const float v = out[static_cast<size_t>(t * c.hidden + j)];
      nonfinite += !std::isfinite(v);
      nonzero_unrouted += !routed[static_cast<size_t>(t)] && v != 0.f;
    }
  }
  EXPECT_EQ(nonfinite, 0) << "non-finite (unwritten?) output values";
  EXPECT_EQ(nonzero_unrouted, 0) << "rows without assignments must be zero";

  const std::vector<int64_t> rows = sample_rows(c.tokens, c.max_checked_rows, rng);
  const auto ref = reference_rows(experts, x, c.hidden, assignments, rows);
  const Comparison cmp = compare_rows(out, c.hidden, rows, ref);
  EXPECT_LE(cmp.relative_error, kTolerance) << cmp.describe();
  EXPECT_LE(cmp.worst_row_error, kRowTolerance) << cmp.describe();
  EXPECT_EQ(cmp.nonfinite, 0) << cmp.describe();
  EXPECT_EQ(cmp.nonzero_in_empty, 0) << cmp.describe();
}

const std::vector<CudaExpertPath> kEveryPath = {CudaExpertPath::kAuto,     CudaExpertPath::kStreaming,
                                                CudaExpertPath::kTiles32,  CudaExpertPath::kTiles64,
                                                CudaExpertPath::kTiles128, CudaExpertPath::kCublas};

class CudaParity : public ::testing::TestWithParam<std::tuple<CaseSpec, CudaExpertPath>> {};

TEST_P(CudaParity, MatchesDoubleReference) {
  MOE_SKIP_WITHOUT_CUDA_DEVICE();
  const auto& [c, path] = GetParam();
  const uint64_t seed = test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (rerun with MOE_TEST_SEED)");
  std::mt19937_64 rng(seed);
  const Problem p = make_problem(c, rng);
  auto backend = make_cuda_backend(0);
  backend->set_expert_path(path);
  load_all(*backend, p, 3);
  check_forward(*backend, 3, c, p.experts, p.x, p.assignments, rng);
}

CaseSpec make_case(std::string name, int64_t hidden, int64_t inter, int32_t experts, int32_t top_k, int64_t tokens) {
  CaseSpec c;
  c.name = std::move(name);
  c.hidden = hidden;
  c.inter = inter;
  c.num_experts = experts;
  c.top_k = top_k;
  c.tokens = tokens;
  return c;
}

std::vector<CaseSpec> parity_cases() {
  std::vector<CaseSpec> cases;
  // Decode path (T <= 16).
  cases.push_back(make_case("decode_t1_e256_k8", 256, 128, 256, 8, 1));
  cases.push_back(make_case("decode_t5_odd_sizes", 203, 97, 256, 8, 5));
  cases.push_back(make_case("decode_t16_e256_k8", 320, 160, 256, 8, 16));
  cases.push_back(make_case("decode_t16_e8_k2", 264, 200, 8, 2, 16));
  {
    CaseSpec c = make_case("decode_over_16_rows_per_expert", 200, 120, 4, 4, 3);
    c.duplicate_copies = 7;  // 21 rows per expert: two passes over the weights
    cases.push_back(c);
  }
  // Prefill path (grouped GEMMs).
  cases.push_back(make_case("prefill_t17_e256_k8", 136, 72, 256, 8, 17));
  cases.push_back(make_case("prefill_t100_odd_sizes", 203, 97, 64, 6, 100));
  cases.push_back(make_case("prefill_t1000_e256_k8", 256, 200, 256, 8, 1000));
  {
    CaseSpec c = make_case("prefill_t4096_e8_k2_multi_tile", 192, 320, 8, 2, 4096);
    c.max_checked_rows = 128;
    cases.push_back(c);
  }
  {
    CaseSpec c = make_case("prefill_t16384_e256_k8", 128, 64, 256, 8, 16384);
    c.max_checked_rows = 96;
    cases.push_back(c);
  }
  {
    CaseSpec c = make_case("prefill_t2000_odd_hidden", 131, 150, 32, 4, 2000);
    c.max_checked_rows = 128;
    cases.push_back(c);
  }
  // Experts without tokens, ids never loaded, tokens without experts.
  for (int64_t tokens : {int64_t{12}, int64_t{300}}) {
    CaseSpec c = make_case("empty_experts_t" + std::to_string(tokens), 144, 80, 64, 4, tokens);
    c.not_loaded = {3, 10, 63};
    for (int32_t e = 0; e < 32; e += 2) c.idle.push_back(e);
    c.unrouted_fraction = 0.2;
    cases.push_back(c);
  }
  // A shared expert with its own (larger) intermediate size in the same layer.
  for (int64_t tokens : {int64_t{9}, int64_t{300}}) {
    CaseSpec c = make_case("shared_expert_t" + std::to_string(tokens), 160, 88, 16, 4, tokens);
    c.shared_inter = 3 * 88 + 5;
    cases.push_back(c);
  }
  // Weights given in f32 and f16 (converted to bf16 at load).
  for (DType dtype : {DType::F32, DType::F16}) {
    for (int64_t tokens : {int64_t{4}, int64_t{40}}) {
      CaseSpec c = make_case(std::string(dtype_name(dtype)) + "_weights_t" + std::to_string(tokens), 192, 96, 16, 4,
                             tokens);
      c.dtype = dtype;
      cases.push_back(c);
    }
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaParity,
                         ::testing::Combine(::testing::ValuesIn(parity_cases()), ::testing::ValuesIn(kEveryPath)),
                         [](const ::testing::TestParamInfo<std::tuple<CaseSpec, CudaExpertPath>>& info) {
                           return std::get<0>(info.param).name + "_" +
                                  std::string(to_string(std::get<1>(info.param)));
                         });

// DeepSeek-V3 expert sizes (hidden 7168, intermediate 2048), 8 experts top-4, every path, a few rows.
TEST(CudaParityRealSizes, DeepSeekV3ExpertSizes) {
  MOE_SKIP_WITHOUT_CUDA_DEVICE();
  const uint64_t seed = test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (rerun with MOE_TEST_SEED)");
  std::mt19937_64 rng(seed);
  CaseSpec c = make_case("deepseek_sizes", 7168, 2048, 8, 4, 1);
  c.max_checked_rows = 3;
  std::map<int32_t, TestExpert> experts;
  for (int32_t e = 0; e < c.num_experts; ++e) experts.emplace(e, random_expert(c.hidden, c.inter, c.dtype, rng));
  auto backend = make_cuda_backend(0);
  for (const auto& [id, e] : experts) backend->load_expert({0, id}, e.view());
  for (CudaExpertPath path : kEveryPath) {
    backend->set_expert_path(path);
    for (int64_t tokens : {int64_t{1}, int64_t{16}, int64_t{200}}) {
      SCOPED_TRACE("T=" + std::to_string(tokens) + " path " + std::string(to_string(path)));
      c.tokens = tokens;
      const RoutingSpec routing{tokens, c.top_k, {0, 1, 2, 3, 4, 5, 6, 7}, 0};
      const auto assignments = random_routing(routing, rng);
      const auto x = random_activations(tokens, c.hidden, rng);
      check_forward(*backend, 0, c, experts, x, assignments, rng);
    }
  }
}

#ifdef MOE_TEST_HAVE_CPU_BACKEND
// The CPU backend (the project's reference) and the CUDA backend agree on every row.
TEST(CudaParityWithCpuBackend, SameOutputs) {
  MOE_SKIP_WITHOUT_CUDA_DEVICE();
  const uint64_t seed = test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (rerun with MOE_TEST_SEED)");
  std::mt19937_64 rng(seed);
  for (int64_t tokens : {int64_t{8}, int64_t{50}}) {
    SCOPED_TRACE("T=" + std::to_string(tokens));
    CaseSpec c = make_case("cpu", 203, 97, 32, 4, tokens);
    const Problem p = make_problem(c, rng);
    auto cuda = make_cuda_backend(0);
    auto cpu = make_cpu_backend(1);
    load_all(*cuda, p, 1);
    load_all(*cpu, p, 1);
    std::vector<float> got(static_cast<size_t>(tokens * c.hidden)), want(got.size());
    cuda->forward(1, p.x.data(), tokens, c.hidden, p.assignments, got.data());
    cpu->forward(1, p.x.data(), tokens, c.hidden, p.assignments, want.data());
    double diff = 0, norm = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      diff += (static_cast<double>(got[i]) - want[i]) * (static_cast<double>(got[i]) - want[i]);
      norm += static_cast<double>(want[i]) * want[i];
    }
    EXPECT_LE(std::sqrt(diff / norm), kTolerance);
  }
}
#endif

}  // namespace
}  // namespace moe::cuda_test
