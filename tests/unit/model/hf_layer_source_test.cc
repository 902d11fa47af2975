// HfLayerSource: every testdata checkpoint reproduces its known MoE outputs through a float64 reference
// built only from what the source returns (so names, gate/up/down order, biases and shared experts must
// all be right), plus the dense-layer, missing-config, missing-tensor and shape-mismatch errors.
#include "runtime/model/hf_layer_source.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "runtime/model/model_error.h"
#include "runtime/model/safetensors_file.h"
#include "tests/unit/model/test_util.h"

namespace moe {
namespace {

using test::expect_error;
using test::testdata;

std::vector<double> to_double(const WeightMatrixView& m) {
  std::vector<float> f(static_cast<size_t>(m.rows * m.cols));
  convert_to_f32(m.dtype, m.data, f.data(), f.size());
  return {f.begin(), f.end()};
}

std::vector<double> matvec(const std::vector<double>& w, int64_t rows, int64_t cols, const std::vector<double>& x) {
  std::vector<double> y(static_cast<size_t>(rows), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) y[r] += w[r * cols + c] * x[c];
  return y;
}

double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }

std::vector<double> run_expert(const ExpertWeights& e, const std::vector<double>& x) {
  const auto& v = e.view;
  std::vector<double> g = matvec(to_double(v.gate), v.gate.rows, v.gate.cols, x);
  std::vector<double> u = matvec(to_double(v.up), v.up.rows, v.up.cols, x);
  for (size_t i = 0; i < g.size(); ++i) g[i] = g[i] * sigmoid(g[i]) * u[i];
  return matvec(to_double(v.down), v.down.rows, v.down.cols, g);
}

std::vector<int> top_indices(const std::vector<double>& score, int k) {
  std::vector<int> idx(score.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return score[a] > score[b]; });
  idx.resize(static_cast<size_t>(k));
  return idx;
}

// The MoE layer output for one token, as ARCHITECTURE.md's routing table defines it.
std::vector<double> reference_layer(const LayerSource& src, int32_t layer, const std::vector<double>& x) {
  const ModelSpec& s = src.spec();
  RouterWeights r = src.router_weights(layer);
  std::vector<double> gate(r.gate.data.begin(), r.gate.data.end());
  std::vector<double> logits = matvec(gate, r.gate.rows, r.gate.cols, x);
  std::vector<int> chosen;
  std::vector<double> weights;
  if (s.family == ModelFamily::DeepseekV3) {
    std::vector<double> score(logits.size()), biased(logits.size());
    for (size_t e = 0; e < logits.size(); ++e) {
      score[e] = sigmoid(logits[e]);
      biased[e] = score[e] + r.correction_bias[e];
    }
    const int per_group = s.num_experts / s.n_group;
    std::vector<double> group_score(static_cast<size_t>(s.n_group));
    for (int g = 0; g < s.n_group; ++g) {
      std::vector<double> members(biased.begin() + g * per_group, biased.begin() + (g + 1) * per_group);
      std::sort(members.rbegin(), members.rend());
      group_score[g] = members[0] + members[1];
    }
    std::vector<int> kept = top_indices(group_score, s.topk_group);
    std::vector<double> masked(biased.size(), 0.0);
    for (int g : kept)
      for (int e = g * per_group; e < (g + 1) * per_group; ++e) masked[e] = biased[e];
    chosen = top_indices(masked, s.top_k);
    double sum = 0;
    for (int e : chosen) sum += score[e];
    for (int e : chosen)
      weights.push_back((s.norm_topk_prob ? score[e] / (sum + 1e-20) : score[e]) * s.routed_scaling_factor);
  } else {
    double mx = *std::max_element(logits.begin(), logits.end()), z = 0;
    std::vector<double> p(logits.size());
    for (size_t e = 0; e < p.size(); ++e) z += p[e] = std::exp(logits[e] - mx);
    for (double& v : p) v /= z;
    chosen = top_indices(p, s.top_k);
    double sum = 0;
    for (int e : chosen) sum += p[e];
    for (int e : chosen) weights.push_back(s.norm_topk_prob ? p[e] / sum : p[e]);
  }
  std::vector<double> out(x.size(), 0.0);
  for (size_t k = 0; k < chosen.size(); ++k) {
    std::vector<double> y = run_expert(src.expert_weights(layer, chosen[k]), x);
    for (size_t i = 0; i < out.size(); ++i) out[i] += weights[k] * y[i];
  }
  if (s.has_shared_expert) {
    double w = 1.0;
    if (s.shared_expert_gated) {
      double dot = 0;
      for (size_t i = 0; i < x.size(); ++i) dot += r.shared_gate[i] * x[i];
      w = sigmoid(dot);
    }
    std::vector<double> y = run_expert(src.expert_weights(layer, s.shared_expert_id()), x);
    for (size_t i = 0; i < out.size(); ++i) out[i] += w * y[i];
  }
  return out;
}

class TestdataFolder : public ::testing::TestWithParam<const char*> {};

TEST_P(TestdataFolder, ReproducesKnownOutputs) {
  HfLayerSource src(testdata(GetParam()));
  auto cases = SafetensorsFile::open(testdata(GetParam()) / "cases.safetensors");
  for (int32_t layer : src.spec().moe_layers) {
    const std::string base = "model.layers." + std::to_string(layer) + ".mlp.batch.";
    Matrix in = read_matrix(*cases, base + "input", -1, src.spec().hidden_size);
    Matrix want = read_matrix(*cases, base + "output", in.rows, in.cols);
    double max_err = 0, max_want = 0;
    for (int64_t t = 0; t < in.rows; ++t) {
      std::vector<double> x(in.row(t), in.row(t) + in.cols);
      std::vector<double> got = reference_layer(src, layer, x);
      for (int64_t i = 0; i < in.cols; ++i) {
        max_err = std::max(max_err, std::fabs(got[i] - want.row(t)[i]));
        max_want = std::max(max_want, std::fabs(double(want.row(t)[i])));
      }
    }
    EXPECT_GT(max_want, 0.0);
    EXPECT_LT(max_err / max_want, 1e-5) << "layer " << layer;
  }
}

TEST_P(TestdataFolder, ExpertViewsPointIntoTheMappedFileWithCheckedShapes) {
  HfLayerSource src(testdata(GetParam()));
  const ModelSpec& s = src.spec();
  const int32_t layer = s.moe_layers.back();
  for (int32_t e = 0; e < s.experts_per_layer(); ++e) {
    ExpertWeights w = src.expert_weights(layer, e);
    EXPECT_EQ(w.view.gate.rows, s.intermediate_of(e));
    EXPECT_EQ(w.view.gate.cols, s.hidden_size);
    EXPECT_EQ(w.view.down.rows, s.hidden_size);
    EXPECT_EQ(w.view.down.cols, s.intermediate_of(e));
    EXPECT_EQ(w.view.up.data, src.checkpoint().find(s.expert_weight_name(layer, e, ExpertProj::Up)).data);
    EXPECT_NE(w.owner, nullptr);
  }
  RouterWeights r = src.router_weights(layer);
  EXPECT_EQ(r.gate.rows, s.num_experts);
  EXPECT_EQ(r.correction_bias.size(), s.family == ModelFamily::DeepseekV3 ? size_t(s.num_experts) : 0u);
  EXPECT_EQ(r.shared_gate.size(), s.shared_expert_gated ? size_t(s.hidden_size) : 0u);
  expect_error([&] { src.expert_weights(layer, s.experts_per_layer()); }, {"out of range"});
}

INSTANTIATE_TEST_SUITE_P(AllFamilies, TestdataFolder,
                         ::testing::Values("mixtral_f32", "mixtral_bf16_sharded", "qwen2_moe_bf16", "qwen3_moe_f32",
                                           "deepseek_v3_bf16"));

TEST(HfLayerSourceTest, DenseLayerIsRefused) {
  HfLayerSource qwen3(testdata("qwen3_moe_f32"));
  expect_error([&] { qwen3.router_weights(1); }, {"layer 1 is not an MoE layer (MoE layers: 0, 2)"});
  expect_error([&] { qwen3.expert_weights(1, 0); }, {"layer 1 is not an MoE layer (MoE layers: 0, 2)"});
  HfLayerSource deepseek(testdata("deepseek_v3_bf16"));
  expect_error([&] { deepseek.expert_weights(0, 0); }, {"layer 0 is not an MoE layer (MoE layers: 1, 2)"});
}

TEST(HfLayerSourceTest, MissingDirectoryOrConfig) {
  test::TempDir dir;
  expect_error([&] { HfLayerSource s(dir / "absent"); }, {"absent", "does not exist"});
  std::filesystem::copy_file(testdata("mixtral_f32") / "model.safetensors", dir / "model.safetensors");
  expect_error([&] { HfLayerSource s(dir.path()); }, {dir.path().string(), "config.json"});
  std::filesystem::remove(dir / "model.safetensors");
  std::filesystem::copy_file(testdata("mixtral_f32") / "config.json", dir / "config.json");
  expect_error([&] { HfLayerSource s(dir.path()); }, {"no weights"});
}

// A mixtral checkpoint (hidden 4, intermediate 2, 2 experts) with one misshapen and one missing tensor.
TEST(HfLayerSourceTest, ShapeMismatchAndMissingTensorAreNamed) {
  test::TempDir dir;
  ModelSpec s;
  s.family = ModelFamily::Mixtral;
  s.hidden_size = 4;
  s.moe_intermediate_size = 2;
  s.num_experts = 2;
  s.top_k = 1;
  s.num_hidden_layers = 1;
  s.moe_layers = {0};
  test::write_file(dir / "config.json", model_spec_to_config(s).dump());
  std::vector<float> zeros(64, 0.f);
  auto bytes = [&](size_t n) { return std::span<const std::byte>(reinterpret_cast<const std::byte*>(zeros.data()), n * 4); };
  std::vector<TensorToWrite> tensors = {
      {s.router_weight_name(0), DType::F32, {2, 4}, bytes(8)},
      {s.expert_weight_name(0, 0, ExpertProj::Gate), DType::F32, {2, 4}, bytes(8)},
      {s.expert_weight_name(0, 0, ExpertProj::Up), DType::F32, {4, 2}, bytes(8)},  // transposed
      {s.expert_weight_name(0, 0, ExpertProj::Down), DType::F32, {4, 2}, bytes(8)},
  };
  write_safetensors(dir / "model.safetensors", tensors);
  HfLayerSource src(dir.path());
  EXPECT_EQ(src.router_weights(0).gate.rows, 2);
  expect_error([&] { src.expert_weights(0, 0); },
               {"tensor 'model.layers.0.block_sparse_moe.experts.0.w3.weight' has shape [4, 2], expected [2, 4]"});
  expect_error([&] { src.expert_weights(0, 1); },
               {"tensor 'model.layers.0.block_sparse_moe.experts.1.w1.weight' not found in", dir.path().string()});
}

}  // namespace
}  // namespace moe
