// plan_cublas_expert_gemms (kernels/cuda/cublas_expert_plan.h), the host-only part of the cuBLAS prefill
// path: row ranges per expert, the column-major cuBLAS dimensions and leading dimensions of the two
// GEMMs, and the errors for inconsistent offsets/experts and int32 overflow. Needs no GPU.
#include "kernels/cuda/cublas_expert_plan.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <vector>

namespace moe::cuda {
namespace {

CublasLayerDims layer(int64_t assignments, int64_t hidden, int64_t hidden_padded, int64_t inter_padded_max) {
  return CublasLayerDims{assignments, hidden, hidden_padded, inter_padded_max};
}

TEST(CublasExpertPlan, SkipsEmptyExpertsAndMapsRowMajorToColumnMajor) {
  // 4 experts: 3 rows, 0 rows, 5 rows, 0 rows (the last one is not even loaded).
  const std::vector<int32_t> offsets{0, 3, 3, 8, 8};
  const std::vector<CublasExpertDims> experts{{true, 100, 128}, {true, 64, 64}, {true, 192, 192}, {false, 0, 0}};
  std::vector<CublasExpertGemms> plan;
  const int64_t rows = plan_cublas_expert_gemms(offsets.data(), experts.data(), 4, layer(8, 30, 64, 192), plan);
  EXPECT_EQ(rows, 8);
  ASSERT_EQ(plan.size(), 2u);

  const CublasExpertGemms& a = plan[0];
  EXPECT_EQ(a.expert, 0);
  EXPECT_EQ(a.row0, 0);
  EXPECT_EQ(a.rows, 3);
  // gate/up: C^T (2I x n) = [gate; up] (ld Hp)^T . xs^T (ld Hp), into gu with ld 2 Ip_max.
  EXPECT_EQ(a.gate_up.m, 200);
  EXPECT_EQ(a.gate_up.n, 3);
  EXPECT_EQ(a.gate_up.k, 64);
  EXPECT_EQ(a.gate_up.lda, 64);
  EXPECT_EQ(a.gate_up.ldb, 64);
  EXPECT_EQ(a.gate_up.ldc, 384);
  // down: C^T (H x n) = down (ld Ip_e)^T . h^T (ld Ip_max), K = I_e, into y with ld round_up(H, 4).
  EXPECT_EQ(a.down.m, 30);
  EXPECT_EQ(a.down.n, 3);
  EXPECT_EQ(a.down.k, 100);
  EXPECT_EQ(a.down.lda, 128);
  EXPECT_EQ(a.down.ldb, 192);
  EXPECT_EQ(a.down.ldc, 32);

  const CublasExpertGemms& b = plan[1];
  EXPECT_EQ(b.expert, 2);
  EXPECT_EQ(b.row0, 3);
  EXPECT_EQ(b.rows, 5);
  EXPECT_EQ(b.gate_up.m, 384);
  EXPECT_EQ(b.gate_up.n, 5);
  EXPECT_EQ(b.down.k, 192);
  EXPECT_EQ(b.down.lda, 192);
  EXPECT_EQ(b.xs_offset, 3 * 64);
  EXPECT_EQ(b.gu_offset, 3 * 384);
  EXPECT_EQ(b.h_offset, 3 * 192);
  EXPECT_EQ(b.y_offset, 3 * 32);

  // Every leading dimension covers its operand (cuBLAS: lda >= k for op_T A, ldb >= k, ldc >= m).
  for (const CublasExpertGemms& g : plan) {
    for (const CublasGemmDims& d : {g.gate_up, g.down}) {
      EXPECT_GE(d.lda, d.k);
      EXPECT_GE(d.ldb, d.k);
      EXPECT_GE(d.ldc, d.m);
    }
  }
}

// cublasGemmEx(CUBLAS_OP_T, CUBLAS_OP_N, ...) on column-major data, in double:
// C[i + j ldc] = sum_p A[p + i lda] * B[p + j ldb] for i < m, j < n, p < k.
void gemm_tn_colmajor(const CublasGemmDims& d, const double* a, const double* b, double* c) {
  for (int j = 0; j < d.n; ++j) {
    for (int i = 0; i < d.m; ++i) {
      double acc = 0;
      for (int p = 0; p < d.k; ++p) acc += a[p + static_cast<int64_t>(i) * d.lda] * b[p + static_cast<int64_t>(j) * d.ldb];
      c[i + static_cast<int64_t>(j) * d.ldc] = acc;
    }
  }
}

double silu(double g) { return g / (1 + std::exp(-g)); }

// The whole path on the host (gather, per-expert GEMMs through the plan's dims and offsets, SwiGLU,
// scatter) against a direct per-assignment reference, on odd sizes (H = 30, unequal I_e, empty experts).
TEST(CublasExpertPlan, EmulatedPathMatchesDirectReference) {
  const int64_t T = 5, H = 30, Hp = 64, Ip_max = 128;
  const std::vector<CublasExpertDims> experts{{true, 24, 64}, {true, 64, 64}, {false, 0, 0}, {true, 100, 128}};
  const int32_t E = 4;
  // Expert-sorted assignments (token, weight); expert 1 and 2 get no rows.
  const std::vector<int32_t> offsets{0, 3, 3, 3, 7};
  const std::vector<int32_t> sorted_token{0, 2, 4, 1, 2, 3, 4};
  const std::vector<double> sorted_weight{0.5, 0.25, 1.0, 0.75, 0.125, 2.0, -1.0};
  const int64_t A = 7;

  std::mt19937 rng(7);
  std::uniform_real_distribution<double> dist(-1, 1);
  std::vector<double> x(static_cast<size_t>(T * H));
  for (double& v : x) v = dist(rng);
  // Per expert one slot like expert_upload: gate [I][Hp], up [I][Hp] right after, down [H][Ip]; zero padding.
  std::vector<std::vector<double>> slots(E);
  for (int32_t e = 0; e < E; ++e) {
    const auto& d = experts[static_cast<size_t>(e)];
    if (!d.loaded) continue;
    auto& s = slots[static_cast<size_t>(e)];
    s.assign(static_cast<size_t>(2 * d.inter * Hp + H * d.inter_padded), 0.0);
    for (int64_t r = 0; r < 2 * d.inter; ++r)
      for (int64_t c = 0; c < H; ++c) s[static_cast<size_t>(r * Hp + c)] = dist(rng);
    double* down = s.data() + 2 * d.inter * Hp;
    for (int64_t r = 0; r < H; ++r)
      for (int64_t c = 0; c < d.inter; ++c) down[r * d.inter_padded + c] = dist(rng);
  }

  std::vector<CublasExpertGemms> plan;
  const int64_t rows = plan_cublas_expert_gemms(offsets.data(), experts.data(), E, layer(A, H, Hp, Ip_max), plan);
  ASSERT_EQ(rows, 7);
  const int64_t ld_gu = cublas_ld_gu(Ip_max), ld_y = cublas_ld_y(H);
  std::vector<double> xs(static_cast<size_t>(rows * Hp), 0.0), gu(static_cast<size_t>(rows * ld_gu), 0.0);
  std::vector<double> h(static_cast<size_t>(A * Ip_max), 0.0), y(static_cast<size_t>(rows * ld_y), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < H; ++c) xs[static_cast<size_t>(r * Hp + c)] = x[static_cast<size_t>(sorted_token[r] * H + c)];
  for (const CublasExpertGemms& g : plan) {
    gemm_tn_colmajor(g.gate_up, slots[static_cast<size_t>(g.expert)].data(), xs.data() + g.xs_offset,
                     gu.data() + g.gu_offset);
  }
  for (int32_t e = 0; e < E; ++e) {
    const int64_t inter = experts[static_cast<size_t>(e)].inter;
    for (int64_t r = offsets[e]; r < offsets[e + 1]; ++r)
      for (int64_t c = 0; c < inter; ++c)
        h[static_cast<size_t>(r * Ip_max + c)] =
            silu(gu[static_cast<size_t>(r * ld_gu + c)]) * gu[static_cast<size_t>(r * ld_gu + inter + c)];
  }
  for (const CublasExpertGemms& g : plan) {
    const auto& d = experts[static_cast<size_t>(g.expert)];
    gemm_tn_colmajor(g.down, slots[static_cast<size_t>(g.expert)].data() + 2 * d.inter * Hp, h.data() + g.h_offset,
                     y.data() + g.y_offset);
  }
  std::vector<double> out(static_cast<size_t>(T * H), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < H; ++c)
      out[static_cast<size_t>(sorted_token[r] * H + c)] += sorted_weight[r] * y[static_cast<size_t>(r * ld_y + c)];

  std::vector<double> expected(static_cast<size_t>(T * H), 0.0);
  for (int32_t e = 0; e < E; ++e) {
    const auto& d = experts[static_cast<size_t>(e)];
    for (int64_t r = offsets[e]; r < offsets[e + 1]; ++r) {
      const double* xt = x.data() + sorted_token[r] * H;
      const double* gate = slots[static_cast<size_t>(e)].data();
      const double* up = gate + d.inter * Hp;
      const double* down = gate + 2 * d.inter * Hp;
      std::vector<double> act(static_cast<size_t>(d.inter));
      for (int64_t i = 0; i < d.inter; ++i) {
        double gs = 0, us = 0;
        for (int64_t c = 0; c < H; ++c) gs += gate[i * Hp + c] * xt[c], us += up[i * Hp + c] * xt[c];
        act[static_cast<size_t>(i)] = silu(gs) * us;
      }
      for (int64_t c = 0; c < H; ++c) {
        double acc = 0;
        for (int64_t i = 0; i < d.inter; ++i) acc += down[c * d.inter_padded + i] * act[static_cast<size_t>(i)];
        expected[static_cast<size_t>(sorted_token[r] * H + c)] += sorted_weight[r] * acc;
      }
    }
  }
  for (size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(out[i], expected[i], 1e-9) << "element " << i;
}

TEST(CublasExpertPlan, StridesKeepRowsAligned) {
  EXPECT_EQ(cublas_ld_gu(192), 384);
  EXPECT_EQ(cublas_ld_y(4096), 4096);
  EXPECT_EQ(cublas_ld_y(4097), 4100);
  EXPECT_EQ(cublas_ld_y(1), 4);
}

TEST(CublasExpertPlan, NoRowsGivesAnEmptyPlan) {
  const std::vector<int32_t> offsets{0, 0, 0};
  const std::vector<CublasExpertDims> experts{{false, 0, 0}, {true, 64, 64}};
  std::vector<CublasExpertGemms> plan(3);
  EXPECT_EQ(plan_cublas_expert_gemms(offsets.data(), experts.data(), 2, layer(0, 64, 64, 64), plan), 0);
  EXPECT_TRUE(plan.empty());
}

TEST(CublasExpertPlan, RejectsInconsistentOffsets) {
  const std::vector<CublasExpertDims> experts{{true, 64, 64}, {true, 64, 64}};
  std::vector<CublasExpertGemms> plan;
  const std::vector<int32_t> nonzero_start{1, 2, 3};
  EXPECT_THROW(plan_cublas_expert_gemms(nonzero_start.data(), experts.data(), 2, layer(8, 64, 64, 64), plan),
               std::logic_error);
  const std::vector<int32_t> decreasing{0, 5, 4};
  EXPECT_THROW(plan_cublas_expert_gemms(decreasing.data(), experts.data(), 2, layer(8, 64, 64, 64), plan),
               std::logic_error);
  const std::vector<int32_t> too_many{0, 5, 9};
  EXPECT_THROW(plan_cublas_expert_gemms(too_many.data(), experts.data(), 2, layer(8, 64, 64, 64), plan),
               std::logic_error);
}

TEST(CublasExpertPlan, RejectsBadExpertsOnlyWhenTheyHaveRows) {
  const std::vector<int32_t> offsets{0, 4, 4};
  std::vector<CublasExpertGemms> plan;
  const std::vector<CublasExpertDims> second_unloaded{{true, 64, 64}, {false, 0, 0}};
  EXPECT_NO_THROW(plan_cublas_expert_gemms(offsets.data(), second_unloaded.data(), 2, layer(4, 64, 64, 64), plan));
  const std::vector<CublasExpertDims> first_unloaded{{false, 0, 0}, {true, 64, 64}};
  EXPECT_THROW(plan_cublas_expert_gemms(offsets.data(), first_unloaded.data(), 2, layer(4, 64, 64, 64), plan),
               std::logic_error);
  const std::vector<CublasExpertDims> wider_than_h{{true, 64, 128}, {true, 64, 64}};
  EXPECT_THROW(plan_cublas_expert_gemms(offsets.data(), wider_than_h.data(), 2, layer(4, 64, 64, 64), plan),
               std::logic_error);
}

TEST(CublasExpertPlan, RejectsBadLayerSizes) {
  const std::vector<int32_t> offsets{0, 1};
  const std::vector<CublasExpertDims> experts{{true, 64, 64}};
  std::vector<CublasExpertGemms> plan;
  EXPECT_THROW(plan_cublas_expert_gemms(offsets.data(), experts.data(), 1, layer(1, 65, 64, 64), plan),
               std::logic_error);  // Hp < H
  EXPECT_THROW(plan_cublas_expert_gemms(offsets.data(), experts.data(), 1, layer(1, 60, 60, 64), plan),
               std::logic_error);  // Hp % 8 != 0
}

TEST(CublasExpertPlan, RejectsDimensionsThatOverflowACublasInt) {
  const std::vector<int32_t> offsets{0, 2};
  std::vector<CublasExpertGemms> plan;
  // 2 * I_e = 2^31 does not fit an int (gate/up m).
  const int64_t big = int64_t{1} << 30;
  const std::vector<CublasExpertDims> experts{{true, big, big}};
  EXPECT_THROW(plan_cublas_expert_gemms(offsets.data(), experts.data(), 1, layer(2, 64, 64, big), plan),
               std::invalid_argument);
  // Hp = 2^31 + 8 does not fit an int (gate/up k).
  const std::vector<CublasExpertDims> small{{true, 64, 64}};
  const int64_t wide = (int64_t{1} << 31) + 8;
  EXPECT_THROW(plan_cublas_expert_gemms(offsets.data(), small.data(), 1, layer(2, 64, wide, 64), plan),
               std::invalid_argument);
}

}  // namespace
}  // namespace moe::cuda
