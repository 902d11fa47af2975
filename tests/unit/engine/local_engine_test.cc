// LocalEngine behaviour beyond parity: errors on dense/unknown layers and wrong sizes, the routing
// output, batch independence and the synthetic presets of every family.
#include <gtest/gtest.h>


#include "kernels/expert_backend.h"
#include "runtime/engine/local_engine.h"
#include "runtime/model/model_error.h"
#include "runtime/model/synthetic_model.h"
#include "tests/common/random_matrix.h"

namespace moe {
namespace {

using test::random_input;

TEST(LocalEngine, DenseLayerIsAClearError) {
  auto source = SyntheticLayerSource::from_preset("tiny-qwen3");
  LocalEngine engine(*source, make_cpu_backend(1));
  try {
    engine.forward(1, random_input(2, 64, 1));
    FAIL() << "dense layer 1 accepted";
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("not an MoE layer"), std::string::npos) << e.what();
  }
  EXPECT_THROW(engine.forward(7, random_input(2, 64, 1)), ModelError);
}

TEST(LocalEngine, WrongHiddenSizeIsAClearError) {
  auto source = SyntheticLayerSource::from_preset("tiny");
  LocalEngine engine(*source, make_cpu_backend(1));
  try {
    engine.forward(0, random_input(2, 63, 1));
    FAIL() << "hidden 63 accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("63"), std::string::npos) << e.what();
  }
}

TEST(LocalEngine, TokensAreIndependentOfTheirBatch) {
  for (const char* preset : {"tiny", "tiny-qwen2", "tiny-qwen3", "tiny-deepseek"}) {
    auto source = SyntheticLayerSource::from_preset(preset);
    LocalEngine engine(*source, make_cpu_backend(1));
    int32_t layer = source->spec().moe_layers.back();
    Matrix x = random_input(9, source->spec().hidden_size, 3);
    RoutingResult routing;
    Matrix all = engine.forward(layer, x, &routing);
    EXPECT_EQ(routing.num_tokens, 9);
    EXPECT_EQ(routing.top_k, source->spec().top_k);
    EXPECT_EQ(routing.shared_weights.empty(), !source->spec().has_shared_expert) << preset;
    for (int64_t t : {0, 4, 8}) {
      Matrix one(1, x.cols);
      std::copy(x.row(t), x.row(t) + x.cols, one.data.begin());
      Matrix y = engine.forward(layer, one);
      for (int64_t c = 0; c < x.cols; ++c) EXPECT_NEAR(y.data[c], all.row(t)[c], 1e-5f) << preset << " token " << t;
    }
  }
}

TEST(LocalEngine, EmptyBatchGivesEmptyOutput) {
  auto source = SyntheticLayerSource::from_preset("tiny");
  LocalEngine engine(*source, make_cpu_backend(1));
  Matrix y = engine.forward(0, Matrix(0, 64));
  EXPECT_EQ(y.rows, 0);
  EXPECT_EQ(y.cols, 64);
}

}  // namespace
}  // namespace moe
