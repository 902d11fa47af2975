// LocalEngine on the CPU backend matches every case of ../shared/testdata/hf_moe (every checkpoint,
// every MoE layer, T=1 and T=37) to a relative error < 1e-4.
#include <gtest/gtest.h>

#include "kernels/expert_backend.h"
#include "tests/unit/engine/testdata_parity.h"

namespace moe {
namespace {

TEST(TestdataParity, EveryCheckpointEveryMoeLayerBothInputs) {
  testdata::expect_engine_matches_testdata([] { return make_cpu_backend(1); }, 1e-4);
}

}  // namespace
}  // namespace moe
