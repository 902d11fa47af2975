// The testdata parity check shared by every backend: LocalEngine on a given backend must match every
// case of ../shared/testdata/hf_moe (all five checkpoints, every MoE layer, T=1 and T=37) within
// `tolerance` (relative error, max |got-want| / max |want|), and the cases must cover every MoE layer.
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <functional>
#include <memory>
#include <set>

#include "kernels/expert_backend.h"
#include "runtime/engine/local_engine.h"
#include "runtime/model/hf_layer_source.h"
#include "tests/unit/engine/testdata_cases.h"

namespace moe::testdata {

inline void expect_engine_matches_testdata(const std::function<std::unique_ptr<ExpertBackend>()>& make_backend,
                                           double tolerance, bool print_errors = false) {
  auto dirs = checkpoints();
  ASSERT_EQ(dirs.size(), 5u) << "expected the five checkpoints of " << hf_moe_dir();
  int cases = 0;
  for (const auto& dir : dirs) {
    HfLayerSource source(dir);
    LocalEngine engine(source, make_backend());
    std::set<int32_t> layers_seen;
    for (const auto& c : cases_of(dir)) {
      Matrix got = engine.forward(c.layer, c.input);
      ASSERT_EQ(got.rows, c.expected.rows) << c.name;
      ASSERT_EQ(got.cols, c.expected.cols) << c.name;
      const double err = relative_error(got, c.expected);
      EXPECT_LT(err, tolerance) << c.name;
      if (print_errors) std::printf("  %-60s relative error %.2e\n", c.name.c_str(), err);
      layers_seen.insert(c.layer);
      ++cases;
    }
    std::set<int32_t> moe_layers(source.spec().moe_layers.begin(), source.spec().moe_layers.end());
    EXPECT_EQ(layers_seen, moe_layers) << dir << ": cases must cover every MoE layer";
  }
  EXPECT_EQ(cases, 5 * 2 * 2);
}

}  // namespace moe::testdata
