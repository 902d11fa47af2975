// LocalEngine on the CUDA backend matches every case of ../shared/testdata/hf_moe (every checkpoint,
// every MoE layer, T=1 and T=37). The backend keeps weights, activations and the intermediate in bf16,
// so the bound is the testdata README's bf16 one (relative error, max |got-want| / max |want|, ~1e-2).
// Full build only (needs the runtime's loader and engine).
#include <gtest/gtest.h>

#include "kernels/cuda/cuda_backend.h"
#include "tests/cuda/cuda_test_device.h"
#include "tests/unit/engine/testdata_parity.h"

namespace moe {
namespace {

constexpr double kBf16Tolerance = 2e-2;

TEST(CudaTestdataParity, EveryCheckpointEveryMoeLayerBothInputs) {
  MOE_SKIP_WITHOUT_CUDA_DEVICE();
  testdata::expect_engine_matches_testdata([] { return make_cuda_backend(0); }, kBf16Tolerance,
                                           /*print_errors=*/true);
}

}  // namespace
}  // namespace moe
