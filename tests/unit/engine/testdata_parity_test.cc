// LocalEngine on the CPU backend matches every case of ../shared/testdata/hf_moe (every checkpoint,
// every MoE layer, T=1 and T=37) to a relative error < 1e-4.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "kernels/expert_backend.h"
#include "runtime/engine/local_engine.h"
#include "runtime/model/hf_layer_source.h"
#include "tests/unit/engine/testdata_cases.h"

namespace moe {
namespace {

TEST(TestdataParity, EveryCheckpointEveryMoeLayerBothInputs) {
  auto dirs = testdata::checkpoints();
  ASSERT_EQ(dirs.size(), 5u) << "expected the five checkpoints of " << testdata::hf_moe_dir();
  int cases = 0;
  for (const auto& dir : dirs) {
    HfLayerSource source(dir);
    LocalEngine engine(source, make_cpu_backend(1));
    std::set<int32_t> layers_seen;
    for (const auto& c : testdata::cases_of(dir)) {
      Matrix got = engine.forward(c.layer, c.input);
      ASSERT_EQ(got.rows, c.expected.rows) << c.name;
      ASSERT_EQ(got.cols, c.expected.cols) << c.name;
      double err = testdata::relative_error(got, c.expected);
      EXPECT_LT(err, 1e-4) << c.name;
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
