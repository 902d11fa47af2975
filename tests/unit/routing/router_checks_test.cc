// Router preconditions: wrong input sizes throw std::invalid_argument, weights or specs that do not fit
// throw ModelError, each naming the values involved.
#include <gtest/gtest.h>

#include <string>

#include "runtime/model/model_error.h"
#include "runtime/routing/router.h"
#include "tests/unit/routing/routing_test_util.h"

namespace moe {
namespace {

using test::identity_gate;
using test::make_spec;

template <typename Error, typename F>
void expect_error(F&& f, const std::string& substring) {
  try {
    f();
    ADD_FAILURE() << "no exception; expected one mentioning '" << substring << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(substring), std::string::npos) << e.what();
  }
}

TEST(RouterChecks, WrongHiddenSizeThrows) {
  Router router(make_spec(ModelFamily::Mixtral, 4, 4, 2), identity_gate(4));
  expect_error<std::invalid_argument>([&] { router.route(Matrix(2, 5)); }, "got [2, 5]");
}

TEST(RouterChecks, InconsistentMatrixStorageThrows) {
  Router router(make_spec(ModelFamily::Mixtral, 4, 4, 2), identity_gate(4));
  Matrix x(2, 4);
  x.data.resize(5);
  expect_error<std::invalid_argument>([&] { router.route(x); }, "with 5 values");
}

TEST(RouterChecks, GateShapeMustMatchSpec) {
  RouterWeights w;
  w.gate = Matrix(4, 3);
  expect_error<ModelError>([&] { Router(make_spec(ModelFamily::Mixtral, 4, 4, 2), w); },
                           "expected [4, 4], got [4, 3]");
}

TEST(RouterChecks, TopKMustFitTheExperts) {
  expect_error<ModelError>(
      [&] { Router(make_spec(ModelFamily::Qwen3Moe, 4, 4, 5), identity_gate(4)); }, "got 5");
}

TEST(RouterChecks, DeepseekNeedsTheCorrectionBias) {
  ModelSpec spec = make_spec(ModelFamily::DeepseekV3, 4, 4, 2);
  spec.n_group = 2;
  expect_error<ModelError>([&] { Router(spec, identity_gate(4)); }, "expected 4 values, got 0");
}

TEST(RouterChecks, OtherFamiliesTakeNoCorrectionBias) {
  RouterWeights w = identity_gate(4);
  w.correction_bias = {0, 0, 0, 0};
  expect_error<ModelError>([&] { Router(make_spec(ModelFamily::Mixtral, 4, 4, 2), w); },
                           "expected 0 values, got 4");
}

TEST(RouterChecks, DeepseekGroupsMustDivideExperts) {
  ModelSpec spec = make_spec(ModelFamily::DeepseekV3, 6, 6, 2);
  spec.n_group = 4;
  RouterWeights w = identity_gate(6);
  w.correction_bias.assign(6, 0.f);
  expect_error<ModelError>([&] { Router(spec, w); }, "n_group=4 must divide num_experts=6");
  spec.n_group = 3;
  spec.topk_group = 4;
  expect_error<ModelError>([&] { Router(spec, w); }, "topk_group must be in [1, n_group=3], got 4");
  spec.n_group = 6;
  spec.topk_group = 1;
  expect_error<ModelError>([&] { Router(spec, w); }, ">= 2 experts each");
}

TEST(RouterChecks, GatedSharedExpertNeedsItsGate) {
  ModelSpec spec = make_spec(ModelFamily::Qwen2Moe, 4, 4, 2);
  spec.has_shared_expert = true;
  spec.shared_expert_gated = true;
  expect_error<ModelError>([&] { Router(spec, identity_gate(4)); }, "shared_expert_gate");
  RouterWeights w = identity_gate(4);
  w.shared_gate = {1, 2, 3};
  expect_error<ModelError>([&] { Router(spec, w); }, "expected 4 values, got 3");
}

}  // namespace
}  // namespace moe
