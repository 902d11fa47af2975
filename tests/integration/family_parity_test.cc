// Parity with HF transformers' own MoE blocks for every checkpoint of tests/data/hf_moe_families (every
// added family in F32 and BF16, deepseek_v3 FP8, gpt_oss MXFP4), end to end through the binaries:
// `moectl forward --model DIR` on every case (every MoE layer, T=1 and T=37), and a loopback cluster of
// two workers (coordinator + workers + ClusterClient, --wire-dtype f32) on every case.
// Relative error (max |got - want| / max |want|) < 1e-4.
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
  for (const auto& dir : testdata::checkpoints(testdata::family_data_dir())) names.push_back(dir.filename().string());
  return names;
}

class FamilyMoectl : public ::testing::TestWithParam<std::string> {};

TEST_P(FamilyMoectl, ForwardModelMatchesHfOnEveryCase) {
  require_binaries({"moectl"});
  const fs::path dir = testdata::family_data_dir() / GetParam();
  const auto cases = testdata::cases_of(dir);
  ASSERT_FALSE(cases.empty()) << dir;
  const fs::path test_dir_ = fs::temp_directory_path() / ("moe_family_moectl_" + std::to_string(::getpid()) + "_" + GetParam());
  fs::create_directories(test_dir_);
  double worst = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    const fs::path input = test_dir_ / ("input" + std::to_string(i) + ".safetensors");
    const fs::path output = test_dir_ / ("output" + std::to_string(i) + ".safetensors");
    TensorToWrite tensor{"hidden_states", DType::F32, {c.input.rows, c.input.cols},
                         std::as_bytes(std::span<const float>(c.input.data))};
    write_safetensors(input, std::span<const TensorToWrite>(&tensor, 1));
    const fs::path log = test_dir_ / ("moectl-forward" + std::to_string(i) + ".log");
    const std::string status =
        run_to_completion({bin_path("moectl"), "forward", "--model", dir.string(), "--layer", std::to_string(c.layer),
                           "--input", input.string(), "--output", output.string()},
                          log, 30s);
    ASSERT_EQ(status, "exit 0") << c.name << ": moectl forward failed; its output:\n" << read_text(log);
    auto file = SafetensorsFile::open(output);
    Matrix got = read_matrix(*file, "hidden_states");
    ASSERT_EQ(got.rows, c.expected.rows) << c.name;
    const double err = relative_error(got, c.expected);
    EXPECT_LT(err, kTolerance) << c.name << " via moectl forward --model";
    worst = std::max(worst, err);
  }
  std::printf("  %-22s moectl forward --model: %zu cases, worst relative error %.2e\n", GetParam().c_str(),
              cases.size(), worst);
  fs::remove_all(test_dir_);
}

// --dequant-dtype bf16: the FP8 weights are rounded to bf16 after dequantization, so the output moves
// off the f32 reference by about bf16's precision, no more.
TEST(FamilyMoectlFlags, DequantDtypeBf16RoundsTheDequantizedWeights) {
  require_binaries({"moectl"});
  const fs::path dir = testdata::family_data_dir() / "deepseek_v3_fp8";
  const auto cases = testdata::cases_of(dir);
  ASSERT_FALSE(cases.empty());
  const auto& c = cases.front();
  const fs::path work = fs::temp_directory_path() / ("moe_family_dequant_" + std::to_string(::getpid()));
  fs::create_directories(work);
  TensorToWrite tensor{"hidden_states", DType::F32, {c.input.rows, c.input.cols},
                       std::as_bytes(std::span<const float>(c.input.data))};
  write_safetensors(work / "in.safetensors", std::span<const TensorToWrite>(&tensor, 1));
  double err[2] = {};
  const char* dtypes[2] = {"f32", "bf16"};
  for (int i = 0; i < 2; ++i) {
    const fs::path out = work / (std::string("out_") + dtypes[i] + ".safetensors");
    const std::string status = run_to_completion(
        {bin_path("moectl"), "forward", "--model", dir.string(), "--layer", std::to_string(c.layer), "--input",
         (work / "in.safetensors").string(), "--output", out.string(), "--dequant-dtype", dtypes[i]},
        work / "log.txt", 30s);
    ASSERT_EQ(status, "exit 0") << read_text(work / "log.txt");
    err[i] = relative_error(read_matrix(*SafetensorsFile::open(out), "hidden_states"), c.expected);
  }
  EXPECT_LT(err[0], kTolerance);
  EXPECT_GT(err[1], 1e-5) << "bf16 dequantization should round the weights";
  EXPECT_LT(err[1], 2e-2);
  std::printf("  deepseek_v3_fp8 %s: dequant f32 %.2e, bf16 %.2e\n", c.name.c_str(), err[0], err[1]);
  fs::remove_all(work);
}

// Dense layers stay refused, with one line naming the MoE layers.
TEST(FamilyMoectlFlags, DenseLayerIsRefusedWithOneLine) {
  require_binaries({"moectl"});
  const fs::path work = fs::temp_directory_path() / ("moe_family_dense_" + std::to_string(::getpid()));
  fs::create_directories(work);
  Matrix x(1, 32);
  TensorToWrite tensor{"hidden_states", DType::F32, {1, 32}, std::as_bytes(std::span<const float>(x.data))};
  write_safetensors(work / "in.safetensors", std::span<const TensorToWrite>(&tensor, 1));
  const std::string status = run_to_completion(
      {bin_path("moectl"), "forward", "--model", (testdata::family_data_dir() / "glm4_moe_f32").string(), "--layer",
       "0", "--input", (work / "in.safetensors").string(), "--output", (work / "out.safetensors").string()},
      work / "log.txt", 30s);
  const std::string log = read_text(work / "log.txt");
  EXPECT_EQ(status, "exit 1") << log;
  EXPECT_NE(log.find("layer 0 is not an MoE layer (MoE layers: 1, 2)"), std::string::npos) << log;
  EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 1) << log;
  fs::remove_all(work);
}

class FamilyCluster : public ClusterTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(FamilyCluster, LoopbackClusterMatchesHfOnEveryCase) {
  const fs::path dir = testdata::family_data_dir() / GetParam();
  const auto cases = testdata::cases_of(dir);
  ASSERT_FALSE(cases.empty()) << dir;
  TestClusterOptions o;
  o.model_flags = {"--model", dir.string()};
  o.workers = 2;
  TestCluster& cluster = start_cluster(o);
  cluster.wait_ready();
  ClusterClientOptions co;
  co.wire_dtype = wire::DType::F32;
  co.deadline = 20s;
  ClusterClient client(cluster.coordinator_address(), co);
  std::set<int32_t> layers;
  double worst = 0;
  for (const auto& c : cases) {
    Matrix got = client.forward(c.layer, c.input);
    ASSERT_EQ(got.rows, c.expected.rows) << c.name;
    const double err = relative_error(got, c.expected);
    EXPECT_LT(err, kTolerance) << c.name << " through the cluster";
    worst = std::max(worst, err);
    layers.insert(c.layer);
  }
  const auto& moe = client.spec().moe_layers;
  EXPECT_EQ(layers, std::set<int32_t>(moe.begin(), moe.end()));
  EXPECT_EQ(client.stats().tokens_per_worker.size(), 2u) << "both workers computed experts";
  std::printf("  %-22s loopback cluster (f32 wire): %zu cases, worst relative error %.2e\n", GetParam().c_str(),
              cases.size(), worst);
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, FamilyMoectl, ::testing::ValuesIn(checkpoint_names()),
                         [](const auto& info) { return info.param; });
INSTANTIATE_TEST_SUITE_P(Checkpoints, FamilyCluster, ::testing::ValuesIn(checkpoint_names()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace moe::integration
