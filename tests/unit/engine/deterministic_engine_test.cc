// LocalEngine --deterministic: over 200 random batches per seed (probe token at random rows among up to
// 64 random others), every output row of the probe is the same bits as its solo output, for a family
// with a gated shared expert (tiny-qwen2), one with a plain shared expert and grouped sigmoid routing
// (tiny-deepseek) and mixtral (tiny), on f32 and bf16 weights. The same batches in the default mode print
// the differences the mode removes (printed, not failed).
#include <gtest/gtest.h>

#include <iostream>
#include <random>
#include <string>

#include "kernels/expert_backend.h"
#include "runtime/engine/local_engine.h"
#include "runtime/model/synthetic_model.h"
#include "tests/common/probe_batches.h"

namespace moe {
namespace {

struct Model {
  const char* preset;
  DType dtype;
};

class DeterministicEngine : public ::testing::TestWithParam<Model> {};

test::ProbeRun probe_run(LocalEngine& engine, int32_t layer, uint32_t seed) {
  const int64_t hidden = engine.spec().hidden_size;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  Matrix probe(1, hidden);
  for (float& v : probe.data) v = normal(rng);
  const Matrix solo = engine.forward(layer, probe);
  auto other = [&](std::mt19937& r) {
    Matrix t(1, hidden);
    for (float& v : t.data) v = normal(r);
    return t;
  };
  return test::run_probe_batches([&](const Matrix& x) { return engine.forward(layer, x); }, probe, solo, rng,
                                 test::ProbeBatchOptions{}, other);
}

TEST_P(DeterministicEngine, ProbeRowsAreItsSoloBitsInEveryBatch) {
  const Model m = GetParam();
  SyntheticModelOptions options = synthetic_preset(m.preset);
  options.dtype = m.dtype;
  SyntheticLayerSource source(options);
  const int32_t layer = source.spec().moe_layers.back();
  LocalEngine det(source, make_cpu_backend(2), LocalEngineOptions{.layers = {layer}, .deterministic = true});
  LocalEngine plain(source, make_cpu_backend(2), LocalEngineOptions{.layers = {layer}});
  for (uint32_t seed : {1u, 2u, 3u}) {
    const test::ProbeRun run = probe_run(det, layer, seed);
    EXPECT_EQ(run.rows_differing, 0) << m.preset << " " << dtype_name(m.dtype) << " seed " << seed << ": "
                                     << run.summary();
    EXPECT_GE(run.rows_checked, 200);
    const test::ProbeRun before = probe_run(plain, layer, seed);
    std::cout << "[ default mode ] " << m.preset << " " << dtype_name(m.dtype) << " seed " << seed << ": "
              << before.summary() << "\n";
  }
}

INSTANTIATE_TEST_SUITE_P(Models, DeterministicEngine,
                         ::testing::Values(Model{"tiny-qwen2", DType::F32}, Model{"tiny-qwen2", DType::BF16},
                                           Model{"tiny-deepseek", DType::F32}, Model{"tiny", DType::BF16}),
                         [](const auto& info) {
                           std::string name = std::string(info.param.preset) + "_" + dtype_name(info.param.dtype);
                           for (char& c : name)
                             if (c == '-') c = '_';
                           return name;
                         });

}  // namespace
}  // namespace moe
