// ModelSpec: parsing the testdata configs of every family, tensor names, bad configs, config round trip.
#include "runtime/model/model_spec.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "runtime/model/model_error.h"
#include "tests/unit/model/test_util.h"

namespace moe {
namespace {

using nlohmann::json;
using test::expect_error;
using test::testdata;

TEST(ModelSpecTest, ParsesMixtral) {
  ModelSpec s = load_model_spec(testdata("mixtral_f32"));
  EXPECT_EQ(s.family, ModelFamily::Mixtral);
  EXPECT_EQ(s.hidden_size, 64);
  EXPECT_EQ(s.moe_intermediate_size, 96);
  EXPECT_EQ(s.num_experts, 8);
  EXPECT_EQ(s.top_k, 2);
  EXPECT_TRUE(s.norm_topk_prob);
  EXPECT_FALSE(s.has_shared_expert);
  EXPECT_EQ(s.experts_per_layer(), 8);
  EXPECT_EQ(s.moe_layers, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(s.router_weight_name(1), "model.layers.1.block_sparse_moe.gate.weight");
  EXPECT_EQ(s.expert_weight_name(0, 3, ExpertProj::Gate), "model.layers.0.block_sparse_moe.experts.3.w1.weight");
  EXPECT_EQ(s.expert_weight_name(0, 3, ExpertProj::Up), "model.layers.0.block_sparse_moe.experts.3.w3.weight");
  EXPECT_EQ(s.expert_weight_name(0, 3, ExpertProj::Down), "model.layers.0.block_sparse_moe.experts.3.w2.weight");

  ModelSpec sharded = load_model_spec(testdata("mixtral_bf16_sharded"));
  EXPECT_EQ(sharded.num_experts, 6);
  EXPECT_EQ(sharded.moe_intermediate_size, 80);
}

TEST(ModelSpecTest, ParsesQwen2MoeWithGatedSharedExpert) {
  ModelSpec s = load_model_spec(testdata("qwen2_moe_bf16"));
  EXPECT_EQ(s.family, ModelFamily::Qwen2Moe);
  EXPECT_EQ(s.num_experts, 12);
  EXPECT_EQ(s.top_k, 4);
  EXPECT_EQ(s.moe_intermediate_size, 32);
  EXPECT_FALSE(s.norm_topk_prob);
  EXPECT_TRUE(s.has_shared_expert);
  EXPECT_TRUE(s.shared_expert_gated);
  EXPECT_EQ(s.shared_intermediate_size, 80);
  EXPECT_EQ(s.experts_per_layer(), 13);
  EXPECT_EQ(s.intermediate_of(12), 80);
  EXPECT_EQ(s.intermediate_of(11), 32);
  EXPECT_EQ(s.moe_layers, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(s.router_weight_name(0), "model.layers.0.mlp.gate.weight");
  EXPECT_EQ(s.shared_gate_name(1), "model.layers.1.mlp.shared_expert_gate.weight");
  EXPECT_EQ(s.expert_weight_name(1, 12, ExpertProj::Down), "model.layers.1.mlp.shared_expert.down_proj.weight");
  EXPECT_EQ(s.expert_weight_name(1, 5, ExpertProj::Up), "model.layers.1.mlp.experts.5.up_proj.weight");
}

TEST(ModelSpecTest, ParsesQwen3MoeWithDenseLayer) {
  ModelSpec s = load_model_spec(testdata("qwen3_moe_f32"));
  EXPECT_EQ(s.family, ModelFamily::Qwen3Moe);
  EXPECT_EQ(s.num_experts, 16);
  EXPECT_TRUE(s.norm_topk_prob);
  EXPECT_FALSE(s.has_shared_expert);
  EXPECT_EQ(s.num_hidden_layers, 3);
  EXPECT_EQ(s.moe_layers, (std::vector<int32_t>{0, 2}));
  EXPECT_FALSE(s.is_moe_layer(1));
  expect_error([&] { s.require_moe_layer(1); }, {"layer 1 is not an MoE layer (MoE layers: 0, 2)"});
  expect_error([&] { s.require_moe_layer(3); }, {"layer 3", "out of range"});
  expect_error([&] { s.shared_gate_name(0); }, {"shared_expert_gate"});
  expect_error([&] { s.expert_weight_name(0, 16, ExpertProj::Gate); }, {"expert 16", "out of range"});
}

TEST(ModelSpecTest, ParsesDeepseekV3) {
  ModelSpec s = load_model_spec(testdata("deepseek_v3_bf16"));
  EXPECT_EQ(s.family, ModelFamily::DeepseekV3);
  EXPECT_EQ(s.num_experts, 16);
  EXPECT_EQ(s.top_k, 4);
  EXPECT_EQ(s.n_group, 4);
  EXPECT_EQ(s.topk_group, 2);
  EXPECT_FLOAT_EQ(s.routed_scaling_factor, 2.5f);
  EXPECT_TRUE(s.norm_topk_prob);
  EXPECT_TRUE(s.has_shared_expert);
  EXPECT_FALSE(s.shared_expert_gated);
  EXPECT_EQ(s.shared_intermediate_size, 32);
  EXPECT_EQ(s.moe_layers, (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(s.correction_bias_name(2), "model.layers.2.mlp.gate.e_score_correction_bias");
  EXPECT_EQ(s.expert_weight_name(1, 16, ExpertProj::Gate), "model.layers.1.mlp.shared_experts.gate_proj.weight");
  expect_error([&] { s.require_moe_layer(0); }, {"layer 0 is not an MoE layer (MoE layers: 1, 2)"});
}

json base_config(const std::string& model_type) {
  json c = {{"model_type", model_type}, {"hidden_size", 64}, {"num_hidden_layers", 4}, {"num_experts_per_tok", 2}};
  if (model_type == "mixtral") {
    c["intermediate_size"] = 96;
    c["num_local_experts"] = 8;
  } else if (model_type == "deepseek_v3") {
    c["moe_intermediate_size"] = 32;
    c["n_routed_experts"] = 8;
    c["first_k_dense_replace"] = 1;
  } else {
    c["moe_intermediate_size"] = 32;
    c["num_experts"] = 8;
    if (model_type == "qwen2_moe") c["shared_expert_intermediate_size"] = 0;
  }
  return c;
}

TEST(ModelSpecTest, QwenSparseStepAndMlpOnlyLayers) {
  json c = base_config("qwen3_moe");
  c["num_hidden_layers"] = 8;
  c["decoder_sparse_step"] = 2;
  c["mlp_only_layers"] = {3};
  EXPECT_EQ(parse_model_spec(c).moe_layers, (std::vector<int32_t>{1, 5, 7}));
  ModelSpec q2 = parse_model_spec(base_config("qwen2_moe"));
  EXPECT_FALSE(q2.has_shared_expert);  // shared_expert_intermediate_size 0
  EXPECT_FALSE(q2.norm_topk_prob);     // HF default
}

TEST(ModelSpecTest, DeepseekDefaultsAndFirstDense) {
  ModelSpec s = parse_model_spec(base_config("deepseek_v3"));
  EXPECT_EQ(s.moe_layers, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_FALSE(s.has_shared_expert);
  json c = base_config("deepseek_v3");
  c["n_shared_experts"] = 2;
  s = parse_model_spec(c);
  EXPECT_TRUE(s.has_shared_expert);
  EXPECT_EQ(s.shared_intermediate_size, 64);
}

TEST(ModelSpecTest, UnknownModelType) {
  expect_error([] { parse_family("llama"); },
               {"unknown model_type 'llama' (supported: mixtral, qwen2_moe, qwen3_moe, deepseek_v3, deepseek_v32, ",
                "glm4_moe, qwen3_next, olmoe, minimax_m2, ernie4_5_moe, gpt_oss, llama4_text)"});
  expect_error([] { parse_model_spec(base_config("gpt2"), "/x/config.json"); },
               {"/x/config.json", "unknown model_type 'gpt2'"});
}

TEST(ModelSpecTest, MissingAndInvalidKeysAreNamed) {
  for (const char* key : {"hidden_size", "num_local_experts", "intermediate_size", "num_experts_per_tok"}) {
    json c = base_config("mixtral");
    c.erase(key);
    expect_error([&] { parse_model_spec(c, "dir/config.json"); },
                 {"dir/config.json", std::string("missing key '") + key + "'"});
  }
  for (const char* key : {"n_routed_experts", "moe_intermediate_size", "first_k_dense_replace"}) {
    json c = base_config("deepseek_v3");
    c.erase(key);
    expect_error([&] { parse_model_spec(c); }, {std::string("missing key '") + key + "'"});
  }
  json c = base_config("qwen2_moe");
  c.erase("shared_expert_intermediate_size");
  expect_error([&] { parse_model_spec(c); }, {"missing key 'shared_expert_intermediate_size'"});
  c = base_config("qwen3_moe");
  c["hidden_size"] = "sixty-four";
  expect_error([&] { parse_model_spec(c); }, {"'hidden_size'", "integer", "sixty-four"});
  c = base_config("qwen3_moe");
  c["hidden_size"] = 0;
  expect_error([&] { parse_model_spec(c); }, {"'hidden_size'", "got 0"});
  c = base_config("qwen3_moe");
  c["norm_topk_prob"] = 1;
  expect_error([&] { parse_model_spec(c); }, {"'norm_topk_prob'"});
  c = base_config("qwen3_moe");
  c["mlp_only_layers"] = "1";
  expect_error([&] { parse_model_spec(c); }, {"'mlp_only_layers'"});
  c = base_config("mixtral");
  c.erase("model_type");
  expect_error([&] { parse_model_spec(c); }, {"missing key 'model_type'"});
}

TEST(ModelSpecTest, InconsistentSpecsAreRejected) {
  json c = base_config("mixtral");
  c["num_experts_per_tok"] = 9;
  expect_error([&] { parse_model_spec(c); }, {"num_experts_per_tok", "9"});
  c = base_config("deepseek_v3");
  c["n_group"] = 3;  // does not divide 8
  expect_error([&] { parse_model_spec(c); }, {"n_group 3", "8"});
  c = base_config("deepseek_v3");
  c["first_k_dense_replace"] = 4;
  expect_error([&] { parse_model_spec(c); }, {"no MoE layers"});
}

// Found with fuzz_model_config: num_hidden_layers 2147483647 made parse_model_spec build a list of 2^31
// MoE layers (8 GiB, out of memory) instead of refusing the config. The bound is kMaxModelLayers,
// checked before the family parsers list the MoE layers.
TEST(ModelSpecTest, AbsurdLayerCountIsRefused) {
  json c = base_config("mixtral");
  c["num_hidden_layers"] = 2147483647;
  expect_error([&] { parse_model_spec(c, "dir/config.json"); },
               {"dir/config.json", "num_hidden_layers 2147483647", "bound of 4096"});
  c["num_hidden_layers"] = kMaxModelLayers;  // the limit itself is accepted
  EXPECT_EQ(parse_model_spec(c).moe_layers.size(), static_cast<size_t>(kMaxModelLayers));
}

TEST(ModelSpecTest, LoadErrorsNameThePath) {
  test::TempDir dir;
  expect_error([&] { load_model_spec(dir / "nope"); }, {"nope", "does not exist"});
  expect_error([&] { load_model_spec(dir.path()); }, {dir.path().string(), "config.json"});
  test::write_file(dir / "config.json", "{\"model_type\": ");
  expect_error([&] { load_model_spec(dir.path()); }, {(dir / "config.json").string(), "not valid JSON"});
}

TEST(ModelSpecTest, ConfigRoundTripForEveryTestdataFolder) {
  for (const char* folder : {"mixtral_f32", "mixtral_bf16_sharded", "qwen2_moe_bf16", "qwen3_moe_f32", "deepseek_v3_bf16"}) {
    SCOPED_TRACE(folder);
    ModelSpec a = load_model_spec(testdata(folder));
    json config = model_spec_to_config(a);
    ModelSpec b = parse_model_spec(config);
    EXPECT_EQ(config["architectures"].size(), 1u);
    EXPECT_EQ(b.family, a.family);
    EXPECT_EQ(b.hidden_size, a.hidden_size);
    EXPECT_EQ(b.moe_intermediate_size, a.moe_intermediate_size);
    EXPECT_EQ(b.num_experts, a.num_experts);
    EXPECT_EQ(b.top_k, a.top_k);
    EXPECT_EQ(b.norm_topk_prob, a.norm_topk_prob);
    EXPECT_EQ(b.n_group, a.n_group);
    EXPECT_EQ(b.topk_group, a.topk_group);
    EXPECT_EQ(b.routed_scaling_factor, a.routed_scaling_factor);
    EXPECT_EQ(b.has_shared_expert, a.has_shared_expert);
    EXPECT_EQ(b.shared_intermediate_size, a.shared_intermediate_size);
    EXPECT_EQ(b.shared_expert_gated, a.shared_expert_gated);
    EXPECT_EQ(b.num_hidden_layers, a.num_hidden_layers);
    EXPECT_EQ(b.moe_layers, a.moe_layers);
    EXPECT_EQ(b.dense_intermediate_size, a.dense_intermediate_size);
    EXPECT_EQ(config["hidden_size"].get<int64_t>() % config["num_attention_heads"].get<int64_t>(), 0);
  }
}

TEST(ModelSpecTest, ConfigRefusesLayerSetsTheFamilyCannotExpress) {
  ModelSpec s = load_model_spec(testdata("deepseek_v3_bf16"));
  s.moe_layers = {0, 2};
  expect_error([&] { model_spec_to_config(s); }, {"first_k_dense_replace"});
  ModelSpec m = load_model_spec(testdata("mixtral_f32"));
  m.moe_layers = {1};
  expect_error([&] { model_spec_to_config(m); }, {"every layer"});
}

}  // namespace
}  // namespace moe
