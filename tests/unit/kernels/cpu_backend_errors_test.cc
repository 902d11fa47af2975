// CpuBackend's precondition checks: each bad load or forward throws std::invalid_argument whose message
// names what was wrong and the values involved.
#include <gtest/gtest.h>

#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "tests/unit/kernels/reference_expert.h"

namespace moe {
namespace {

// Runs f, expects std::invalid_argument, returns its message.
template <class F>
std::string invalid_argument_message(F&& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  ADD_FAILURE() << "no std::invalid_argument thrown";
  return {};
}

class CpuBackendErrors : public ::testing::Test {
 protected:
  std::mt19937 rng{3};
  test::RandomExpert expert{DType::F32, 32, 48, rng};
  CpuBackend backend;
  std::vector<float> x = test::random_tokens(4, 32, rng);
  std::vector<float> out = std::vector<float>(4 * 32);
  void SetUp() override { backend.load_expert({3, 1}, expert.view()); }
};

TEST_F(CpuBackendErrors, ForwardOnAnExpertNotLoadedNamesLayerAndExpert) {
  const TokenAssignment a[] = {{0, 1, 1.f}, {1, 7, 1.f}};
  std::string m = invalid_argument_message([&] { backend.forward(3, x.data(), 4, 32, a, out.data()); });
  EXPECT_NE(m.find("layer 3, expert 7"), std::string::npos) << m;
  EXPECT_NE(m.find("not loaded"), std::string::npos) << m;
  // Expert 1 is loaded in layer 3 only.
  const TokenAssignment b[] = {{0, 1, 1.f}};
  m = invalid_argument_message([&] { backend.forward(2, x.data(), 4, 32, b, out.data()); });
  EXPECT_NE(m.find("layer 2, expert 1"), std::string::npos) << m;
}

TEST_F(CpuBackendErrors, ForwardWithWrongHiddenGivesExpectedAndGot) {
  const TokenAssignment a[] = {{0, 1, 1.f}};
  std::string m = invalid_argument_message([&] { backend.forward(3, x.data(), 4, 16, a, out.data()); });
  EXPECT_NE(m.find("hidden size 32"), std::string::npos) << m;
  EXPECT_NE(m.find("got hidden 16"), std::string::npos) << m;
}

TEST_F(CpuBackendErrors, ForwardWithTokenOutOfRangeNamesTheTokenAndRange) {
  const TokenAssignment a[] = {{0, 1, 1.f}, {4, 1, 1.f}};
  std::string m = invalid_argument_message([&] { backend.forward(3, x.data(), 4, 32, a, out.data()); });
  EXPECT_NE(m.find("assignment 1"), std::string::npos) << m;
  EXPECT_NE(m.find("token 4"), std::string::npos) << m;
  EXPECT_NE(m.find("[0, 4)"), std::string::npos) << m;
  const TokenAssignment negative[] = {{-1, 1, 1.f}};
  m = invalid_argument_message([&] { backend.forward(3, x.data(), 4, 32, negative, out.data()); });
  EXPECT_NE(m.find("token -1"), std::string::npos) << m;
}

TEST_F(CpuBackendErrors, ForwardWithBadSizesOrNullBuffers) {
  const TokenAssignment a[] = {{0, 1, 1.f}};
  EXPECT_NE(invalid_argument_message([&] { backend.forward(3, x.data(), -1, 32, a, out.data()); }).find("-1"),
            std::string::npos);
  EXPECT_NE(invalid_argument_message([&] { backend.forward(3, x.data(), 4, 0, a, out.data()); }).find("hidden"),
            std::string::npos);
  EXPECT_NE(invalid_argument_message([&] { backend.forward(3, nullptr, 4, 32, a, out.data()); }).find("null"),
            std::string::npos);
}

TEST_F(CpuBackendErrors, LoadWithInconsistentShapesNamesTheMatrices) {
  test::RandomExpert other{DType::F32, 32, 40, rng};
  ExpertWeightsView v = expert.view();
  v.up = other.up.view();  // [40, 32] against gate [48, 32]
  std::string m = invalid_argument_message([&] { backend.load_expert({0, 2}, v); });
  EXPECT_NE(m.find("layer 0, expert 2"), std::string::npos) << m;
  EXPECT_NE(m.find("up is [40, 32]"), std::string::npos) << m;
  EXPECT_NE(m.find("[48, 32]"), std::string::npos) << m;

  v = expert.view();
  v.down = other.down.view();  // [32, 40], expected [32, 48]
  m = invalid_argument_message([&] { backend.load_expert({0, 2}, v); });
  EXPECT_NE(m.find("down is [32, 40]"), std::string::npos) << m;
  EXPECT_NE(m.find("[32, 48]"), std::string::npos) << m;

  v = expert.view();
  v.gate.data = nullptr;
  m = invalid_argument_message([&] { backend.load_expert({0, 2}, v); });
  EXPECT_NE(m.find("gate has no data"), std::string::npos) << m;

  v = expert.view();
  v.down.rows = 0;
  m = invalid_argument_message([&] { backend.load_expert({0, 2}, v); });
  EXPECT_NE(m.find("down has empty shape [0, 48]"), std::string::npos) << m;
  EXPECT_FALSE(backend.has_expert({0, 2}));
}

}  // namespace
}  // namespace moe
