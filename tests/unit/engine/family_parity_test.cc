// Parity of LocalEngine (CPU backend) with HF transformers' own MoE blocks for every checkpoint of
// tests/data/hf_moe_families (tools/make_test_checkpoints.py): every family in F32 and BF16, deepseek_v3
// with FP8 block-quantized experts, gpt_oss with MXFP4 experts; every MoE layer, T=1 and T=37.
#include <gtest/gtest.h>

#include <cstdio>
#include <set>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/expert_backend.h"
#include "runtime/engine/local_engine.h"
#include "runtime/model/hf_layer_source.h"
#include "tests/unit/engine/testdata_cases.h"

namespace moe::testdata {
namespace {

constexpr double kTolerance = 1e-4;

std::vector<std::string> expected_checkpoints() {
  std::vector<std::string> names;
  for (const char* f : {"deepseek_v32", "ernie4_5_moe", "glm4_moe", "gpt_oss", "llama4_text", "minimax_m2", "olmoe",
                        "qwen3_next"})
    for (const char* d : {"bf16", "f32"}) names.push_back(std::string(f) + "_" + d);
  names.push_back("deepseek_v3_fp8");
  names.push_back("gpt_oss_mxfp4");
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::string> checkpoint_names() {
  std::vector<std::string> names;
  for (const auto& dir : checkpoints(family_data_dir())) names.push_back(dir.filename().string());
  return names;
}

TEST(FamilyTestdata, HoldsEveryFamilyAndFormat) {
  EXPECT_EQ(checkpoint_names(), expected_checkpoints()) << family_data_dir();
}

class FamilyParity : public ::testing::TestWithParam<std::string> {};

TEST_P(FamilyParity, LocalEngineMatchesHfMoeBlockOnEveryMoeLayer) {
  const auto dir = family_data_dir() / GetParam();
  HfLayerSource source(dir);
  EXPECT_EQ(std::string(family_name(source.spec().family)) + "_", GetParam().substr(0, GetParam().rfind('_') + 1));
  LocalEngine engine(source, make_cpu_backend(1));
  std::set<int32_t> layers_seen;
  int cases = 0;
  for (const auto& c : cases_of(dir)) {
    Matrix got = engine.forward(c.layer, c.input);
    ASSERT_EQ(got.rows, c.expected.rows) << c.name;
    ASSERT_EQ(got.cols, c.expected.cols) << c.name;
    const double err = relative_error(got, c.expected);
    EXPECT_LT(err, kTolerance) << c.name;
    std::printf("  %-50s relative error %.2e\n", c.name.c_str(), err);
    layers_seen.insert(c.layer);
    ++cases;
  }
  const auto& moe = source.spec().moe_layers;
  EXPECT_EQ(layers_seen, std::set<int32_t>(moe.begin(), moe.end())) << dir << ": cases must cover every MoE layer";
  EXPECT_EQ(cases, 2 * static_cast<int>(moe.size()));
}

// What a backend holds for quantized experts is what it reports (moe_worker_weight_bytes is its
// resident_bytes): the CPU backend keeps the dequantized F32 matrices, and gpt_oss's biases.
TEST(FamilyWeightBytes, CpuBackendReportsTheDequantizedBytesItHolds) {
  for (const char* name : {"deepseek_v3_fp8", "gpt_oss_mxfp4"}) {
    HfLayerSource source(family_data_dir() / name);
    const ModelSpec& s = source.spec();
    const int32_t layer = s.moe_layers.front();
    // Kernel blas holds f32 as it is; kernel amx holds two padded bf16 planes (its bytes are checked in
    // tests/unit/kernels/cpu_backend_test.cc).
    auto backend = std::make_unique<CpuBackend>(CpuBackendOptions{.threads = 1, .kernel = CpuKernel::Blas});
    ExpertWeights w = source.expert_weights(layer, 0);
    EXPECT_EQ(w.view.gate.dtype, DType::F32) << name;
    backend->load_expert({layer, 0}, w.view);
    const size_t h = static_cast<size_t>(s.hidden_size), i = static_cast<size_t>(s.moe_intermediate_size);
    const size_t biases = s.expert_biases() ? 2 * i + h : 0;
    EXPECT_EQ(backend->resident_bytes(), (3 * h * i + biases) * sizeof(float)) << name;
  }
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, FamilyParity, ::testing::ValuesIn(expected_checkpoints()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace moe::testdata
