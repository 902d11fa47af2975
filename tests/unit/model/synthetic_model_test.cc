// SyntheticLayerSource: presets, determinism, per-expert independence, init scale, and the bit-exact
// write_hf_checkpoint -> HfLayerSource round trip for every family, dtype and sharding.
#include "runtime/model/synthetic_model.h"

#include <cmath>
#include <cstring>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "runtime/model/hf_checkpoint_writer.h"
#include "runtime/model/hf_layer_source.h"
#include "runtime/model/model_error.h"
#include "tests/unit/model/test_util.h"

namespace moe {
namespace {

using test::expect_error;

size_t view_bytes(const WeightMatrixView& m) { return static_cast<size_t>(m.rows * m.cols) * dtype_size(m.dtype); }

bool same_matrix(const WeightMatrixView& a, const WeightMatrixView& b) {
  return a.dtype == b.dtype && a.rows == b.rows && a.cols == b.cols &&
         std::memcmp(a.data, b.data, view_bytes(a)) == 0;
}

bool same_expert(const ExpertWeights& a, const ExpertWeights& b) {
  return same_matrix(a.view.gate, b.view.gate) && same_matrix(a.view.up, b.view.up) &&
         same_matrix(a.view.down, b.view.down);
}

TEST(SyntheticModelTest, PresetsHaveTheDocumentedShapes) {
  ModelSpec d = synthetic_model_spec(synthetic_preset("default"));
  EXPECT_EQ(d.family, ModelFamily::Mixtral);
  EXPECT_EQ(d.hidden_size, 1024);
  EXPECT_EQ(d.moe_intermediate_size, 3584);
  EXPECT_EQ(d.num_experts, 8);
  EXPECT_EQ(d.top_k, 2);
  EXPECT_EQ(d.moe_layers, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(synthetic_preset("default").dtype, DType::BF16);
  EXPECT_EQ(synthetic_model_spec(synthetic_preset("tiny")).hidden_size, 64);
  ModelSpec q2 = synthetic_model_spec(synthetic_preset("tiny-qwen2"));
  EXPECT_TRUE(q2.shared_expert_gated);
  EXPECT_EQ(q2.shared_intermediate_size, 80);
  EXPECT_EQ(synthetic_model_spec(synthetic_preset("tiny-qwen3")).moe_layers, (std::vector<int32_t>{0, 2}));
  ModelSpec ds = synthetic_model_spec(synthetic_preset("tiny-deepseek"));
  EXPECT_EQ(ds.moe_layers, (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(ds.n_group, 4);
  EXPECT_TRUE(ds.has_shared_expert);
  for (const std::string& name : synthetic_preset_names()) EXPECT_NO_THROW(synthetic_model_spec(synthetic_preset(name)));
  expect_error([] { synthetic_preset("huge"); }, {"unknown synthetic model preset 'huge'", "tiny-deepseek"});
}

TEST(SyntheticModelTest, InconsistentOptionsAreRefused) {
  SyntheticModelOptions o = synthetic_preset("tiny");
  o.dense_layers = {0};
  expect_error([&] { synthetic_model_spec(o); }, {"mixtral", "dense_layers"});
  o = synthetic_preset("tiny-deepseek");
  o.dense_layers = {1};
  expect_error([&] { synthetic_model_spec(o); }, {"prefix"});
  o = synthetic_preset("tiny-qwen3");
  o.shared_expert = true;
  expect_error([&] { synthetic_model_spec(o); }, {"qwen3_moe has no shared expert"});
  o = synthetic_preset("tiny");
  o.top_k = 9;
  expect_error([&] { synthetic_model_spec(o); }, {"num_experts_per_tok", "9"});
}

TEST(SyntheticModelTest, DeterministicAndIndependentPerExpert) {
  auto a = SyntheticLayerSource::from_preset("tiny-qwen2", 7);
  auto b = SyntheticLayerSource::from_preset("tiny-qwen2", 7);
  auto other_seed = SyntheticLayerSource::from_preset("tiny-qwen2", 8);
  // b generates the experts in the opposite order: each is a function of (seed, layer, expert) only.
  for (int32_t e = a->spec().experts_per_layer() - 1; e >= 0; --e) EXPECT_TRUE(same_expert(b->expert_weights(1, e), a->expert_weights(1, e)));
  EXPECT_FALSE(same_expert(a->expert_weights(1, 0), a->expert_weights(1, 1)));
  EXPECT_FALSE(same_expert(a->expert_weights(0, 0), a->expert_weights(1, 0)));
  EXPECT_FALSE(same_expert(a->expert_weights(1, 0), other_seed->expert_weights(1, 0)));
  EXPECT_EQ(a->router_weights(0).gate.data, b->router_weights(0).gate.data);
  EXPECT_NE(a->router_weights(0).gate.data, a->router_weights(1).gate.data);
  EXPECT_NE(a->router_weights(0).gate.data, other_seed->router_weights(0).gate.data);
  EXPECT_EQ(a->router_weights(0).shared_gate.size(), 64u);
  ExpertWeights shared = a->expert_weights(0, a->spec().shared_expert_id());
  EXPECT_EQ(shared.view.gate.rows, 80);
  expect_error([&] { a->expert_weights(0, 13); }, {"expert 13", "out of range"});
  auto q3 = SyntheticLayerSource::from_preset("tiny-qwen3");
  expect_error([&] { q3->expert_weights(1, 0); }, {"layer 1 is not an MoE layer (MoE layers: 0, 2)"});
}

TEST(SyntheticModelTest, WeightsHaveHfInitScale) {
  SyntheticModelOptions o = synthetic_preset("tiny");
  o.hidden = 256;
  o.intermediate = 512;
  SyntheticLayerSource src(o);
  ExpertWeights w = src.expert_weights(0, 3);
  auto stats = [](const WeightMatrixView& m) {
    const float* p = static_cast<const float*>(m.data);
    double sum = 0, sq = 0;
    const size_t n = static_cast<size_t>(m.rows * m.cols);
    for (size_t i = 0; i < n; ++i) sum += p[i], sq += double(p[i]) * p[i];
    return std::pair(sum / n, std::sqrt(sq / n));
  };
  auto [gate_mean, gate_std] = stats(w.view.gate);   // fan_in = hidden
  auto [down_mean, down_std] = stats(w.view.down);   // fan_in = intermediate
  EXPECT_NEAR(gate_mean, 0.0, 0.005);
  EXPECT_NEAR(gate_std, 1.0 / std::sqrt(256.0), 0.002);
  EXPECT_NEAR(down_mean, 0.0, 0.005);
  EXPECT_NEAR(down_std, 1.0 / std::sqrt(512.0), 0.002);
  RouterWeights r = SyntheticLayerSource(synthetic_preset("tiny-deepseek")).router_weights(1);
  for (float b : r.correction_bias) EXPECT_LE(std::fabs(b), 0.1f);
}

TEST(SyntheticModelTest, Bf16PresetStoresBf16Values) {
  SyntheticModelOptions o = synthetic_preset("tiny");
  o.dtype = DType::BF16;
  SyntheticLayerSource src(o);
  EXPECT_EQ(src.expert_weights(0, 0).view.gate.dtype, DType::BF16);
  for (float v : src.router_weights(0).gate.data) EXPECT_EQ(bf16_to_f32(f32_to_bf16(v)), v);  // representable
}

// Everything HfLayerSource reads back equals what the synthetic source produced, bit for bit.
void expect_round_trip(const LayerSource& src, const std::filesystem::path& dir) {
  HfLayerSource back(dir);
  const ModelSpec& a = src.spec();
  const ModelSpec& b = back.spec();
  EXPECT_EQ(b.family, a.family);
  EXPECT_EQ(b.moe_layers, a.moe_layers);
  EXPECT_EQ(b.experts_per_layer(), a.experts_per_layer());
  EXPECT_EQ(b.shared_intermediate_size, a.shared_intermediate_size);
  EXPECT_EQ(b.norm_topk_prob, a.norm_topk_prob);
  EXPECT_EQ(b.n_group, a.n_group);
  EXPECT_EQ(b.topk_group, a.topk_group);
  EXPECT_EQ(b.routed_scaling_factor, a.routed_scaling_factor);
  for (int32_t layer : a.moe_layers) {
    RouterWeights ra = src.router_weights(layer), rb = back.router_weights(layer);
    EXPECT_EQ(ra.gate.data, rb.gate.data);
    EXPECT_EQ(ra.correction_bias, rb.correction_bias);
    EXPECT_EQ(ra.shared_gate, rb.shared_gate);
    for (int32_t e = 0; e < a.experts_per_layer(); ++e)
      EXPECT_TRUE(same_expert(src.expert_weights(layer, e), back.expert_weights(layer, e))) << "layer " << layer << " expert " << e;
  }
}

class RoundTrip : public ::testing::TestWithParam<std::tuple<const char*, DType, int>> {};

TEST_P(RoundTrip, HfLayerSourceReadsBackBitExactly) {
  auto [preset, dtype, shards] = GetParam();
  SyntheticModelOptions o = synthetic_preset(preset);
  o.dtype = dtype;
  o.seed = 42;
  SyntheticLayerSource src(o);
  test::TempDir dir;
  write_hf_checkpoint(src, dir.path(), dtype, shards);
  EXPECT_EQ(std::filesystem::exists(dir / "model.safetensors.index.json"), shards > 1);
  expect_round_trip(src, dir.path());
  nlohmann::json config = nlohmann::json::parse(test::read_file(dir / "config.json"));
  EXPECT_EQ(config["model_type"], family_name(src.spec().family));
  EXPECT_EQ(config["torch_dtype"], dtype == DType::F32 ? "float32" : dtype == DType::BF16 ? "bfloat16" : "float16");
  if (shards > 1) {
    Checkpoint c(dir.path());
    EXPECT_EQ(c.files().size(), static_cast<size_t>(shards));
  }
}

INSTANTIATE_TEST_SUITE_P(
    FamiliesDtypesShards, RoundTrip,
    ::testing::Values(std::make_tuple("tiny", DType::F32, 1), std::make_tuple("tiny", DType::BF16, 3),
                      std::make_tuple("tiny-qwen2", DType::BF16, 1), std::make_tuple("tiny-qwen2", DType::F16, 2),
                      std::make_tuple("tiny-qwen3", DType::F32, 4), std::make_tuple("tiny-deepseek", DType::BF16, 2),
                      std::make_tuple("tiny-deepseek", DType::F32, 1)));

TEST(SyntheticCheckpointTest, RewritingReplacesOldShardsAndConvertsDtype) {
  auto src = SyntheticLayerSource::from_preset("tiny", 3);
  test::TempDir dir;
  write_hf_checkpoint(*src, dir.path(), DType::F32, 3);
  write_hf_checkpoint(*src, dir.path(), DType::BF16, 1);  // F32 source written as BF16: rounded
  EXPECT_FALSE(std::filesystem::exists(dir / "model.safetensors.index.json"));
  EXPECT_FALSE(std::filesystem::exists(dir / "model-00001-of-00003.safetensors"));
  HfLayerSource back(dir.path());
  ExpertWeights a = src->expert_weights(1, 2), b = back.expert_weights(1, 2);
  ASSERT_EQ(b.view.up.dtype, DType::BF16);
  const float* fa = static_cast<const float*>(a.view.up.data);
  const uint16_t* hb = static_cast<const uint16_t*>(b.view.up.data);
  for (int64_t i = 0; i < a.view.up.rows * a.view.up.cols; ++i) ASSERT_EQ(hb[i], f32_to_bf16(fa[i]));
  expect_error([&] { write_hf_checkpoint(*src, dir.path(), DType::F32, 1000); }, {"1000 shards"});
}

TEST(SyntheticCheckpointTest, HfCheckpointCanBeReshardedThroughHfLayerSource) {
  test::TempDir dir;
  HfLayerSource original(test::testdata("deepseek_v3_bf16"));
  write_hf_checkpoint(original, dir.path(), DType::BF16, 1);
  HfLayerSource copy(dir.path());
  for (int32_t e = 0; e < original.spec().experts_per_layer(); ++e)
    EXPECT_TRUE(same_expert(original.expert_weights(2, e), copy.expert_weights(2, e)));
  EXPECT_EQ(original.router_weights(2).correction_bias, copy.router_weights(2).correction_bias);
}

}  // namespace
}  // namespace moe
