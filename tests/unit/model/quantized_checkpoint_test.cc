// FP8 block and MXFP4 expert weights: the element decoders, dequantization with partial edge blocks,
// and the one-line refusals of truncated or inconsistent quantized checkpoints (copies of the checked-in
// tests/data/hf_moe_families checkpoints with one thing broken).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>

#include <nlohmann/json.hpp>

#include "runtime/model/hf_layer_source.h"
#include "runtime/model/quantized_weights.h"
#include "tests/unit/model/test_util.h"

namespace moe {
namespace {

namespace fs = std::filesystem;
using test::expect_error;

fs::path family_data(const std::string& name) { return fs::path(MOE_FAMILY_DATA_DIR) / name; }

TensorView raw_view(const std::string& name, const std::string& dtype, std::vector<int64_t> shape, const void* data) {
  TensorView t;
  t.name = name;
  t.dtype_name = dtype;
  t.shape = std::move(shape);
  t.data = data;
  return t;
}

TEST(QuantizedWeights, Fp8E4m3Decoding) {
  EXPECT_EQ(fp8_e4m3_to_f32(0x38), 1.f);
  EXPECT_EQ(fp8_e4m3_to_f32(0xb8), -1.f);
  EXPECT_EQ(fp8_e4m3_to_f32(0x7e), 448.f);             // the largest finite e4m3fn value
  EXPECT_EQ(fp8_e4m3_to_f32(0x01), std::ldexp(1.f, -9));  // smallest subnormal
  EXPECT_EQ(fp8_e4m3_to_f32(0x0c), 0.0234375f);         // 1.5 * 2^-6
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_f32(0x7f)));
}

TEST(QuantizedWeights, E2m1Decoding) {
  const float want[16] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.f, -0.5f, -1, -1.5f, -2, -3, -4, -6};
  for (uint8_t i = 0; i < 16; ++i) EXPECT_EQ(e2m1_to_f32(i), want[i]) << int(i);
}

TEST(QuantizedWeights, Fp8BlocksWithPartialEdgeBlocks) {
  // [3, 5] in blocks of [2, 2]: scales [2, 3]; the last row and column are edge blocks.
  std::vector<uint8_t> w(15, 0x38);  // every element 1.0
  const float scales[6] = {1, 2, 3, 4, 5, 6};
  std::vector<float> out(15);
  dequantize_fp8_block(raw_view("w", "F8_E4M3", {3, 5}, w.data()), raw_view("s", "F32", {2, 3}, scales), 2, 2,
                       out.data());
  const float want[15] = {1, 1, 2, 2, 3, 1, 1, 2, 2, 3, 4, 4, 5, 5, 6};
  for (int i = 0; i < 15; ++i) EXPECT_EQ(out[i], want[i]) << i;
  expect_error([&] {
    dequantize_fp8_block(raw_view("w", "F8_E4M3", {3, 5}, w.data()), raw_view("s", "F32", {2, 2}, scales), 2, 2,
                         out.data());
  }, {"scale tensor 's'", "[2, 2]", "expected [2, 3]", "[3, 5]"});
}

TEST(QuantizedWeights, Mxfp4RowsLowNibbleFirst) {
  uint8_t blocks[16] = {};
  blocks[0] = 0x72;  // low nibble 2 (1.0), high nibble 7 (6.0)
  blocks[15] = 0x9f;  // low f (-6.0), high 9 (-0.5)
  const uint8_t scales[1] = {128};  // 2^1
  std::vector<float> out(32);
  dequantize_mxfp4_rows(raw_view("b", "U8", {1, 1, 16}, blocks), raw_view("s", "U8", {1, 1}, scales), 0, 1, out.data());
  EXPECT_EQ(out[0], 2.f);
  EXPECT_EQ(out[1], 12.f);
  EXPECT_EQ(out[30], -12.f);
  EXPECT_EQ(out[31], -1.f);
  expect_error([&] {
    dequantize_mxfp4_rows(raw_view("b", "U8", {1, 1, 16}, blocks), raw_view("s", "U8", {1, 2}, scales), 0, 1,
                          out.data());
  }, {"mxfp4 scales 's'", "[1, 2]", "expected [1, 1]"});
}

// Copies checkpoint `name` into `dir`, passing every tensor of model.safetensors through `edit`, which
// may drop it (return false) or change its shape; config.json through `edit_config`.
void copy_with(const std::string& name, const fs::path& dir,
               const std::function<bool(const std::string&, std::vector<int64_t>&)>& edit,
               const std::function<void(nlohmann::json&)>& edit_config = {}) {
  const fs::path src = family_data(name);
  nlohmann::json config = nlohmann::json::parse(test::read_file(src / "config.json"));
  if (edit_config) edit_config(config);
  test::write_file(dir / "config.json", config.dump());
  auto file = SafetensorsFile::open(src / "model.safetensors");
  SafetensorsWriter writer(dir / "model.safetensors");
  std::vector<TensorView> kept;
  for (const std::string& n : file->names()) {
    TensorView t = file->raw_tensor(n);
    std::vector<int64_t> shape = t.shape;
    if (!edit(n, shape)) continue;
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    const size_t elem = t.nbytes / static_cast<size_t>(std::max<int64_t>(1, t.numel()));
    t.nbytes = std::min(t.nbytes, static_cast<size_t>(numel) * elem);
    writer.declare_raw(n, t.dtype_name, elem, shape);
    kept.push_back(t);
  }
  writer.begin();
  for (const TensorView& t : kept) writer.write({static_cast<const std::byte*>(t.data), t.nbytes});
  writer.finish();
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

const std::string kFp8Expert = "model.layers.1.mlp.experts.3.up_proj.weight";

TEST(QuantizedCheckpoint, TheUnbrokenCopiesLoad) {
  test::TempDir fp8, mx;
  copy_with("deepseek_v3_fp8", fp8.path(), [](const std::string&, std::vector<int64_t>&) { return true; });
  copy_with("gpt_oss_mxfp4", mx.path(), [](const std::string&, std::vector<int64_t>&) { return true; });
  HfLayerSource a(fp8.path()), b(mx.path());
  EXPECT_EQ(a.expert_weights(1, 3).view.up.dtype, DType::F32);
  EXPECT_EQ(b.expert_weights(1, 3).view.down.rows, b.spec().hidden_size);
  HfLayerSource bf16(fp8.path(), HfLayerSourceOptions{DType::BF16});
  EXPECT_EQ(bf16.expert_weights(1, 3).view.up.dtype, DType::BF16);
}

TEST(QuantizedCheckpoint, Fp8WithoutItsScaleIsRefused) {
  test::TempDir dir;
  copy_with("deepseek_v3_fp8", dir.path(), [](const std::string& n, std::vector<int64_t>&) {
    return n != kFp8Expert + "_scale_inv";
  });
  HfLayerSource source(dir.path());
  expect_error([&] { source.expert_weights(1, 3); }, {kFp8Expert, "has no scale tensor", "_scale_inv"});
}

TEST(QuantizedCheckpoint, Fp8ScaleOfTheWrongShapeIsRefused) {
  test::TempDir dir;
  copy_with("deepseek_v3_fp8", dir.path(), [](const std::string& n, std::vector<int64_t>& shape) {
    if (n == kFp8Expert + "_scale_inv") shape = {1, 1};
    return true;
  });
  HfLayerSource source(dir.path());
  expect_error([&] { source.expert_weights(1, 3); }, {"scale tensor", "[1, 1]", "expected [2, 3]"});
}

TEST(QuantizedCheckpoint, Fp8TensorWithoutQuantizationConfigIsRefused) {
  test::TempDir dir;
  copy_with("deepseek_v3_fp8", dir.path(), [](const std::string&, std::vector<int64_t>&) { return true; },
            [](nlohmann::json& c) { c.erase("quantization_config"); });
  HfLayerSource source(dir.path());
  expect_error([&] { source.expert_weights(1, 3); }, {"is F8_E4M3", "has no quantization_config"});
}

TEST(QuantizedCheckpoint, UnsupportedQuantizationIsRefusedAtOpen) {
  test::TempDir dir;
  copy_with("deepseek_v3_fp8", dir.path(), [](const std::string&, std::vector<int64_t>&) { return true; },
            [](nlohmann::json& c) { c["quantization_config"] = {{"quant_method", "fp8"}}; });
  expect_error([&] { HfLayerSource s(dir.path()); }, {"weight_block_size", "per-tensor FP8 is not supported"});
  copy_with("deepseek_v3_fp8", dir.path(), [](const std::string&, std::vector<int64_t>&) { return true; },
            [](nlohmann::json& c) { c["quantization_config"] = {{"quant_method", "awq"}}; });
  expect_error([&] { HfLayerSource s(dir.path()); }, {"quant_method 'awq' is not supported"});
}

TEST(QuantizedCheckpoint, Mxfp4MissingOrMisshapenScalesAreRefused) {
  test::TempDir dir;
  copy_with("gpt_oss_mxfp4", dir.path(), [](const std::string& n, std::vector<int64_t>&) {
    return !ends_with(n, "layers.1.mlp.experts.down_proj_scales");
  });
  HfLayerSource missing(dir.path());
  expect_error([&] { missing.expert_weights(1, 0); }, {"down_proj_blocks", "has no scale tensor", "down_proj_scales"});
  copy_with("gpt_oss_mxfp4", dir.path(), [](const std::string& n, std::vector<int64_t>& shape) {
    if (ends_with(n, "layers.1.mlp.experts.gate_up_proj_scales")) shape.back() = 1;
    return true;
  });
  HfLayerSource misshapen(dir.path());
  expect_error([&] { misshapen.expert_weights(1, 0); }, {"mxfp4 scales", "gate_up_proj_scales", "expected"});
}

TEST(QuantizedCheckpoint, Mxfp4TruncatedBlocksAreRefused) {
  test::TempDir dir;
  copy_with("gpt_oss_mxfp4", dir.path(), [](const std::string& n, std::vector<int64_t>& shape) {
    if (ends_with(n, "layers.0.mlp.experts.gate_up_proj_blocks")) shape[0] -= 1;  // one expert short
    return true;
  });
  HfLayerSource source(dir.path());
  expect_error([&] { source.expert_weights(0, 0); }, {"gate_up_proj_blocks", "has shape", "expected"});
}

}  // namespace
}  // namespace moe
