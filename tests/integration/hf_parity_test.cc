// Parity of a real 3-worker cluster with the float64 reference outputs of every testdata checkpoint:
// every case (every MoE layer, T=1 and T=37) through ClusterClient in this process, and through
// `moectl forward --cluster` (its safetensors file contract) for one checkpoint. F32 on the wire;
// relative error (max |got - want| / max |want|) < 1e-4.
#include <gtest/gtest.h>

#include <set>

#include "runtime/client/cluster_client.h"
#include "runtime/model/safetensors_file.h"
#include "tests/integration/integration_util.h"

namespace moe::integration {
namespace {

namespace fs = std::filesystem;

constexpr double kTolerance = 1e-4;

std::vector<std::string> checkpoint_names() {
  std::vector<std::string> names;
  for (const auto& dir : testdata::checkpoints()) names.push_back(dir.filename().string());
  return names;
}

TestClusterOptions hf_cluster(const fs::path& dir) {
  TestClusterOptions o;
  o.model_flags = {"--model", dir.string()};
  o.workers = 3;
  return o;
}

ClusterClientOptions f32_client() {
  ClusterClientOptions o;
  o.wire_dtype = wire::DType::F32;
  o.deadline = 20s;
  return o;
}

TEST(HfTestdata, HoldsEveryCheckpoint) {
  EXPECT_EQ(checkpoint_names(), (std::vector<std::string>{"deepseek_v3_bf16", "mixtral_bf16_sharded", "mixtral_f32",
                                                          "qwen2_moe_bf16", "qwen3_moe_f32"}))
      << "testdata folder " << testdata::hf_moe_dir();
}

class HfParity : public ClusterTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(HfParity, EveryCaseThroughClusterClientOnThreeWorkers) {
  const fs::path dir = testdata::hf_moe_dir() / GetParam();
  const auto cases = testdata::cases_of(dir);
  ASSERT_FALSE(cases.empty()) << dir;
  TestCluster& cluster = start_cluster(hf_cluster(dir));
  const ClientPlacement placement = cluster.wait_ready();
  ClusterClient client(cluster.coordinator_address(), f32_client());

  std::set<int32_t> layers_tested;
  for (const auto& c : cases) {
    Matrix got = client.forward(c.layer, c.input);
    ASSERT_EQ(got.rows, c.expected.rows) << c.name;
    ASSERT_EQ(got.cols, c.expected.cols) << c.name;
    EXPECT_LT(relative_error(got, c.expected), kTolerance) << c.name << " (" << c.input.rows << " tokens)";
    layers_tested.insert(c.layer);
  }
  const auto& moe_layers = client.spec().moe_layers;
  EXPECT_EQ(layers_tested, std::set<int32_t>(moe_layers.begin(), moe_layers.end()))
      << "the cases should cover every MoE layer of " << GetParam();
  // The experts are spread over all three workers and each of them computed tokens.
  EXPECT_EQ(client.stats().tokens_per_worker.size(), 3u) << "placement epoch " << placement.epoch();
  EXPECT_EQ(client.stats().calls_ok, cases.size());
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, HfParity, ::testing::ValuesIn(checkpoint_names()),
                         [](const auto& info) { return info.param; });

// `moectl forward --cluster`: hidden_states in, hidden_states out, through the same kind of cluster.
class MoectlForwardCluster : public ClusterTest {};

TEST_F(MoectlForwardCluster, FileContractMatchesTheReferenceOnEveryCase) {
  require_binaries({"moectl"});
  const fs::path dir = testdata::hf_moe_dir() / "qwen2_moe_bf16";  // routed + sigmoid-gated shared expert
  const auto cases = testdata::cases_of(dir);
  ASSERT_FALSE(cases.empty()) << dir;
  TestCluster& cluster = start_cluster(hf_cluster(dir));
  cluster.wait_ready();

  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    const fs::path input = cluster.dir() / ("input" + std::to_string(i) + ".safetensors");
    const fs::path output = cluster.dir() / ("output" + std::to_string(i) + ".safetensors");
    TensorToWrite tensor{"hidden_states", DType::F32, {c.input.rows, c.input.cols},
                         std::as_bytes(std::span<const float>(c.input.data))};
    write_safetensors(input, std::span<const TensorToWrite>(&tensor, 1));
    const fs::path log = cluster.dir() / ("moectl-forward" + std::to_string(i) + ".log");
    const std::string status = run_to_completion(
        {bin_path("moectl"), "forward", "--cluster", cluster.coordinator_address(), "--layer", std::to_string(c.layer),
         "--input", input.string(), "--output", output.string(), "--wire-dtype", "f32"},
        log, 30s);
    ASSERT_EQ(status, "exit 0") << c.name << ": moectl forward failed; its output:\n" << read_text(log);
    auto file = SafetensorsFile::open(output);
    ASSERT_TRUE(file->contains("hidden_states")) << output;
    Matrix got = read_matrix(*file, "hidden_states");
    ASSERT_EQ(got.rows, c.expected.rows) << c.name;
    ASSERT_EQ(got.cols, c.expected.cols) << c.name;
    EXPECT_LT(relative_error(got, c.expected), kTolerance) << c.name << " via moectl forward --cluster";
  }
}

}  // namespace
}  // namespace moe::integration
