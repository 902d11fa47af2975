// LocalEngine on the CUDA backend matches every case of ../shared/testdata/hf_moe (every checkpoint,
// every MoE layer, T=1 and T=37). The backend keeps weights, activations and the intermediate in bf16,
// so the bound is the testdata README's bf16 one (relative error, max |got-want| / max |want|, ~1e-2).
// Full build only (needs the runtime's loader and engine).
#include <gtest/gtest.h>

#include <cstdio>
#include <set>

#include "kernels/cuda/cuda_backend.h"
#include "runtime/engine/local_engine.h"
#include "runtime/model/hf_layer_source.h"
#include "tests/cuda/cuda_test_device.h"
#include "tests/unit/engine/testdata_cases.h"

namespace moe {
namespace {

constexpr double kBf16Tolerance = 2e-2;

TEST(CudaTestdataParity, EveryCheckpointEveryMoeLayerBothInputs) {
  MOE_SKIP_WITHOUT_CUDA_DEVICE();
  auto dirs = testdata::checkpoints();
  ASSERT_EQ(dirs.size(), 5u) << "expected the five checkpoints of " << testdata::hf_moe_dir();
  int cases = 0;
  for (const auto& dir : dirs) {
    HfLayerSource source(dir);
    LocalEngine engine(source, make_cuda_backend(0));
    std::set<int32_t> layers_seen;
    for (const auto& c : testdata::cases_of(dir)) {
      Matrix got = engine.forward(c.layer, c.input);
      ASSERT_EQ(got.rows, c.expected.rows) << c.name;
      ASSERT_EQ(got.cols, c.expected.cols) << c.name;
      const double err = testdata::relative_error(got, c.expected);
      EXPECT_LT(err, kBf16Tolerance) << c.name;
      std::printf("  %-60s relative error %.2e\n", c.name.c_str(), err);
      layers_seen.insert(c.layer);
      ++cases;
    }
    std::set<int32_t> moe_layers(source.spec().moe_layers.begin(), source.spec().moe_layers.end());
    EXPECT_EQ(layers_seen, moe_layers) << dir << ": cases must cover every MoE layer";
  }
  EXPECT_EQ(cases, 5 * 2 * 2);
}

}  // namespace
}  // namespace moe
