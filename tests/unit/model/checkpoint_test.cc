// Checkpoint: single-file and sharded testdata, lazy shards, and the missing-dir/weights/tensor errors.
#include "runtime/model/checkpoint.h"

#include <gtest/gtest.h>

#include "runtime/model/model_error.h"
#include "tests/unit/model/test_util.h"

namespace moe {
namespace {

using test::expect_error;
using test::testdata;

TEST(CheckpointTest, SingleFile) {
  Checkpoint c(testdata("mixtral_f32"));
  EXPECT_FALSE(c.sharded());
  EXPECT_EQ(c.files(), (std::vector<std::string>{"model.safetensors"}));
  EXPECT_TRUE(c.contains("model.layers.1.block_sparse_moe.gate.weight"));
  TensorView t = c.find("model.layers.1.block_sparse_moe.gate.weight");
  EXPECT_EQ(t.dtype, DType::F32);
  EXPECT_EQ(t.shape, (std::vector<int64_t>{8, 64}));
  EXPECT_EQ(c.names().size(), 54u);
}

TEST(CheckpointTest, ShardedIndexResolvesEveryTensorToItsShard) {
  Checkpoint c(testdata("mixtral_bf16_sharded"));
  EXPECT_TRUE(c.sharded());
  EXPECT_EQ(c.files().size(), 3u);
  for (const std::string& name : c.names()) {
    TensorView t = c.find(name);
    EXPECT_EQ(t.name, name);
    EXPECT_EQ(t.dtype, DType::BF16);
  }
  // w1 lives in shard 2, w2 in shard 3 (see the index): different files behind one expert.
  EXPECT_NE(c.find("model.layers.0.block_sparse_moe.experts.0.w1.weight").file,
            c.find("model.layers.0.block_sparse_moe.experts.0.w2.weight").file);
  EXPECT_EQ(c.find("model.layers.0.block_sparse_moe.experts.0.w1.weight").file,
            c.find("model.layers.0.block_sparse_moe.experts.1.w1.weight").file);
}

TEST(CheckpointTest, MissingTensorIsNamed) {
  for (const char* folder : {"mixtral_f32", "deepseek_v3_bf16"}) {
    Checkpoint c(testdata(folder));
    expect_error([&] { c.find("model.layers.9.mlp.gate.weight"); },
                 {"tensor 'model.layers.9.mlp.gate.weight' not found in", testdata(folder).string()});
    EXPECT_FALSE(c.contains("model.layers.9.mlp.gate.weight"));
  }
}

TEST(CheckpointTest, MissingDirectoryAndWeights) {
  test::TempDir dir;
  expect_error([&] { Checkpoint c(dir / "absent"); }, {"absent", "does not exist"});
  expect_error([&] { Checkpoint c(dir.path()); }, {dir.path().string(), "no weights"});
}

TEST(CheckpointTest, BadIndexAndMissingShard) {
  test::TempDir dir;
  test::write_file(dir / "model.safetensors.index.json", "{\"weight_map\": ");
  expect_error([&] { Checkpoint c(dir.path()); }, {"model.safetensors.index.json", "not valid JSON"});
  test::write_file(dir / "model.safetensors.index.json", "{\"metadata\": {}}");
  expect_error([&] { Checkpoint c(dir.path()); }, {"weight_map"});
  test::write_file(dir / "model.safetensors.index.json", R"({"weight_map": {"a": "../../etc/passwd"}})");
  expect_error([&] { Checkpoint c(dir.path()); }, {"'a'", "not a file in the checkpoint directory"});
  test::write_file(dir / "model.safetensors.index.json", R"({"weight_map": {"a": "model-00001-of-00001.safetensors"}})");
  Checkpoint c(dir.path());  // shards open lazily
  EXPECT_TRUE(c.contains("a"));
  expect_error([&] { c.find("a"); }, {"model-00001-of-00001.safetensors", "does not exist"});
}

TEST(CheckpointTest, IndexPointingAtTheWrongShard) {
  test::TempDir dir;
  test::write_file(dir / "s.safetensors",
                   test::raw_safetensors(R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", std::string(4, '\0')));
  test::write_file(dir / "model.safetensors.index.json", R"({"weight_map": {"a": "s.safetensors", "b": "s.safetensors"}})");
  Checkpoint c(dir.path());
  EXPECT_EQ(c.find("b").shape, (std::vector<int64_t>{1}));
  expect_error([&] { c.find("a"); }, {"tensor 'a' not found in", "s.safetensors", "maps it there"});
}

}  // namespace
}  // namespace moe
