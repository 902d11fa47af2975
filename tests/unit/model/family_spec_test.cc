// Config parsing of the families read from the configs transformers itself saved (tests/data/
// hf_moe_families): MoE layers, routing and expert traits, quantization; and the spec -> config.json ->
// spec round trip that modelInfo.specJson relies on.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "runtime/model/model_error.h"
#include "runtime/model/model_spec.h"
#include "tests/unit/model/test_util.h"

namespace moe {
namespace {

namespace fs = std::filesystem;

ModelSpec spec_of(const std::string& name) { return load_model_spec(fs::path(MOE_FAMILY_DATA_DIR) / name); }

TEST(FamilySpec, EachFamilyParsesWithItsMoeLayersAndTraits) {
  struct Want {
    std::string dir;
    ModelFamily family;
    std::vector<int32_t> moe_layers;
    RoutingKind routing;
    bool shared, gated;
  };
  const Want wants[] = {
      {"olmoe_f32", ModelFamily::Olmoe, {0, 1}, RoutingKind::SoftmaxTopk, false, false},
      {"deepseek_v32_f32", ModelFamily::DeepseekV32, {1, 2}, RoutingKind::GroupedSigmoid, true, false},
      {"qwen3_next_f32", ModelFamily::Qwen3Next, {0, 2}, RoutingKind::SoftmaxTopk, true, true},
      {"glm4_moe_f32", ModelFamily::Glm4Moe, {1, 2}, RoutingKind::GroupedSigmoid, true, false},
      {"gpt_oss_f32", ModelFamily::GptOss, {0, 1}, RoutingKind::TopkSoftmax, false, false},
      {"llama4_text_f32", ModelFamily::Llama4Text, {0, 2}, RoutingKind::SigmoidTopk, true, false},
      {"ernie4_5_moe_f32", ModelFamily::Ernie45Moe, {1, 2, 3}, RoutingKind::BiasedSoftmax, true, false},
      {"minimax_m2_f32", ModelFamily::MinimaxM2, {0, 1}, RoutingKind::GroupedSigmoid, false, false},
  };
  for (const Want& w : wants) {
    ModelSpec s = spec_of(w.dir);
    EXPECT_EQ(s.family, w.family) << w.dir;
    EXPECT_EQ(s.moe_layers, w.moe_layers) << w.dir;
    EXPECT_EQ(s.routing(), w.routing) << w.dir;
    EXPECT_EQ(s.has_shared_expert, w.shared) << w.dir;
    EXPECT_EQ(s.shared_expert_gated, w.gated) << w.dir;
    EXPECT_EQ(s.quant, WeightQuant::None) << w.dir;
  }
  ModelSpec oss = spec_of("gpt_oss_f32");
  EXPECT_EQ(oss.expert_math().activation, ExpertActivation::ClampedSwiglu);
  EXPECT_FLOAT_EQ(oss.swiglu_limit, 1.5f);
  EXPECT_FLOAT_EQ(oss.swiglu_alpha, 1.702f);
  EXPECT_TRUE(spec_of("llama4_text_f32").expert_math().weight_scales_input);
  EXPECT_EQ(spec_of("ernie4_5_moe_f32").top_k, 3);  // saved as moe_k
  EXPECT_FLOAT_EQ(spec_of("deepseek_v32_f32").routed_scaling_factor, 2.5f);
}

TEST(FamilySpec, QuantizationConfigs) {
  ModelSpec fp8 = spec_of("deepseek_v3_fp8");
  EXPECT_EQ(fp8.quant, WeightQuant::Fp8Block);
  EXPECT_EQ(fp8.quant_block_rows, 16);
  EXPECT_EQ(fp8.quant_block_cols, 16);
  EXPECT_EQ(spec_of("gpt_oss_mxfp4").quant, WeightQuant::Mxfp4);
  nlohmann::json c = nlohmann::json::parse(test::read_file(fs::path(MOE_FAMILY_DATA_DIR) / "olmoe_f32/config.json"));
  c["quantization_config"] = {{"quant_method", "mxfp4"}};
  test::expect_error([&] { parse_model_spec(c); }, {"mxfp4", "only for gpt_oss"});
}

TEST(FamilySpec, UnknownModelTypeListsTheTwelveFamilies) {
  test::expect_error([&] { parse_family("jamba"); }, {"unknown model_type 'jamba'", "gpt_oss", "llama4_text",
                                                      "ernie4_5_moe", "deepseek_v32", "minimax_m2", "olmoe"});
}

TEST(FamilySpec, EverySpecRoundTripsThroughItsConfig) {
  for (const char* dir : {"olmoe_bf16", "deepseek_v32_bf16", "qwen3_next_bf16", "glm4_moe_bf16", "gpt_oss_bf16",
                          "llama4_text_bf16", "ernie4_5_moe_bf16", "minimax_m2_bf16"}) {
    ModelSpec s = spec_of(dir);
    ModelSpec back = parse_model_spec(model_spec_to_config(s), "round trip");
    EXPECT_EQ(back.family, s.family) << dir;
    EXPECT_EQ(back.moe_layers, s.moe_layers) << dir;
    EXPECT_EQ(back.num_experts, s.num_experts) << dir;
    EXPECT_EQ(back.top_k, s.top_k) << dir;
    EXPECT_EQ(back.moe_intermediate_size, s.moe_intermediate_size) << dir;
    EXPECT_EQ(back.has_shared_expert, s.has_shared_expert) << dir;
    EXPECT_EQ(back.shared_intermediate_size, s.shared_intermediate_size) << dir;
    EXPECT_EQ(back.norm_topk_prob, s.norm_topk_prob) << dir;
    EXPECT_EQ(back.n_group, s.n_group) << dir;
    EXPECT_EQ(back.topk_group, s.topk_group) << dir;
    EXPECT_FLOAT_EQ(back.routed_scaling_factor, s.routed_scaling_factor) << dir;
    EXPECT_FLOAT_EQ(back.norm_min, s.norm_min) << dir;
    EXPECT_FLOAT_EQ(back.swiglu_limit, s.swiglu_limit) << dir;
  }
}

}  // namespace
}  // namespace moe
