// The CUDA backend's contract beyond the numbers: device selection errors, shape checks at load,
// bad assignments at forward, load/unload/replace bookkeeping, empty inputs, the device-pointer entry
// (and its CUDA-graph capture at T = 1) agreeing with the host entry, and concurrent callers.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <stdexcept>
#include <thread>
#include <vector>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_check.h"
#include "tests/cuda/cuda_test_device.h"
#include "tests/cuda/moe_problem.h"

namespace moe::cuda_test {
namespace {

constexpr int64_t kHidden = 200;
constexpr int64_t kInter = 96;

class CudaBackendApi : public ::testing::Test {
 protected:
  void SetUp() override {
    MOE_SKIP_WITHOUT_CUDA_DEVICE();
    seed_ = test_seed();
    rng_.seed(seed_);
    backend_ = make_cuda_backend(0);
    for (int32_t e = 0; e < 6; ++e) experts_.emplace(e, random_expert(kHidden, kInter, DType::BF16, rng_));
    for (const auto& [id, e] : experts_) backend_->load_expert({2, id}, e.view());
  }

  std::vector<float> run(const std::vector<float>& x, int64_t tokens, const std::vector<TokenAssignment>& a) {
    std::vector<float> out(static_cast<size_t>(tokens * kHidden), std::numeric_limits<float>::quiet_NaN());
    backend_->forward(2, x.data(), tokens, kHidden, a, out.data());
    return out;
  }

  double error_vs_reference(const std::vector<float>& out, const std::vector<float>& x, int64_t tokens,
                            const std::vector<TokenAssignment>& a) {
    const std::vector<int64_t> rows = sample_rows(tokens, tokens, rng_);
    const Comparison c = compare_rows(out, kHidden, rows, reference_rows(experts_, x, kHidden, a, rows));
    EXPECT_EQ(c.nonfinite, 0) << c.describe();
    return c.relative_error;
  }

  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
  std::unique_ptr<CudaBackend> backend_;
  std::map<int32_t, TestExpert> experts_;
};

TEST(CudaBackendDevice, RejectsMissingDevice) {
  MOE_SKIP_WITHOUT_CUDA_DEVICE();
  int count = 0;
  MOE_CUDA_CHECK(cudaGetDeviceCount(&count));
  EXPECT_THROW(make_cuda_backend(count), std::runtime_error);
  EXPECT_THROW(make_cuda_backend(-1), std::runtime_error);
}

TEST_F(CudaBackendApi, NameAndBookkeeping) {
  EXPECT_NE(backend_->name().find("cuda:0"), std::string::npos) << backend_->name();
  EXPECT_TRUE(backend_->has_expert({2, 5}));
  EXPECT_FALSE(backend_->has_expert({2, 6}));
  EXPECT_FALSE(backend_->has_expert({1, 0}));
  // hidden 200 -> 256 padded, intermediate 96 -> 128 padded: gate+up 96x256 each, down 200x128, bf16.
  const size_t per_expert = (2 * 96 * 256 + 200 * 128) * 2;
  EXPECT_EQ(backend_->resident_bytes(), 6 * per_expert);
  EXPECT_GE(backend_->pool_bytes(), backend_->resident_bytes());
  backend_->unload_expert({2, 5});
  backend_->unload_expert({2, 5});  // unloading twice is harmless
  EXPECT_FALSE(backend_->has_expert({2, 5}));
  EXPECT_EQ(backend_->resident_bytes(), 5 * per_expert);
  for (int32_t e = 0; e < 5; ++e) backend_->unload_expert({2, e});
  EXPECT_EQ(backend_->resident_bytes(), 0u);
}

TEST_F(CudaBackendApi, RejectsInconsistentShapesAtLoad) {
  TestExpert e = random_expert(kHidden, kInter, DType::BF16, rng_);
  ExpertWeightsView v = e.view();
  v.up.rows = kInter - 1;
  EXPECT_THROW(backend_->load_expert({2, 7}, v), std::invalid_argument);
  v = e.view();
  v.down.cols = kInter + 1;
  EXPECT_THROW(backend_->load_expert({2, 7}, v), std::invalid_argument);
  v = e.view();
  v.gate.data = nullptr;
  EXPECT_THROW(backend_->load_expert({2, 7}, v), std::invalid_argument);
  EXPECT_THROW(backend_->load_expert({2, -1}, e.view()), std::invalid_argument);
  TestExpert other_hidden = random_expert(kHidden + 8, kInter, DType::BF16, rng_);
  EXPECT_THROW(backend_->load_expert({2, 7}, other_hidden.view()), std::invalid_argument);
  EXPECT_FALSE(backend_->has_expert({2, 7}));
  EXPECT_NO_THROW(backend_->load_expert({4, 7}, other_hidden.view()));  // another layer may differ
}

TEST_F(CudaBackendApi, RejectsBadForwards) {
  const auto x = random_activations(3, kHidden, rng_);
  std::vector<float> out(3 * kHidden);
  const std::vector<TokenAssignment> unknown_expert = {{0, 6, 1.f}};
  const std::vector<TokenAssignment> bad_token = {{3, 0, 1.f}};
  const std::vector<TokenAssignment> ok = {{0, 1, 1.f}};
  EXPECT_THROW(backend_->forward(2, x.data(), 3, kHidden, unknown_expert, out.data()), std::invalid_argument);
  EXPECT_THROW(backend_->forward(2, x.data(), 3, kHidden, bad_token, out.data()), std::invalid_argument);
  EXPECT_THROW(backend_->forward(9, x.data(), 3, kHidden, ok, out.data()), std::invalid_argument);
  EXPECT_THROW(backend_->forward(2, x.data(), 3, kHidden - 1, ok, out.data()), std::invalid_argument);
  EXPECT_THROW(backend_->forward(2, x.data(), -1, kHidden, ok, out.data()), std::invalid_argument);
}

TEST_F(CudaBackendApi, EmptyInputs) {
  const auto x = random_activations(4, kHidden, rng_);
  const auto out = run(x, 4, {});
  for (float v : out) ASSERT_EQ(v, 0.f);
  std::vector<float> none;
  backend_->forward(2, none.data(), 0, kHidden, {}, none.data());
}

TEST_F(CudaBackendApi, ReplacingAnExpertChangesTheOutput) {
  const auto x = random_activations(20, kHidden, rng_);
  RoutingSpec routing{20, 2, {0, 1, 2, 3, 4, 5}, 0};
  const auto a = random_routing(routing, rng_);
  EXPECT_LE(error_vs_reference(run(x, 20, a), x, 20, a), 1e-2);
  experts_[3] = random_expert(kHidden, kInter, DType::BF16, rng_);
  const size_t resident = backend_->resident_bytes();
  backend_->load_expert({2, 3}, experts_[3].view());
  EXPECT_EQ(backend_->resident_bytes(), resident);
  EXPECT_LE(error_vs_reference(run(x, 20, a), x, 20, a), 1e-2);
}

TEST_F(CudaBackendApi, DeviceEntryAndGraphCaptureMatchHostEntry) {
  for (int64_t tokens : {int64_t{1}, int64_t{40}}) {
    SCOPED_TRACE("T=" + std::to_string(tokens));
    RoutingSpec routing{tokens, 3, {0, 1, 2, 3, 4, 5}, 0};
    const auto a = random_routing(routing, rng_);
    const auto x1 = random_activations(tokens, kHidden, rng_);
    const auto x2 = random_activations(tokens, kHidden, rng_);
    const size_t xb = x1.size() * sizeof(float);
    float* dx = nullptr;
    float* dout = nullptr;
    TokenAssignment* da = nullptr;
    MOE_CUDA_CHECK(cudaMalloc(&dx, xb));
    MOE_CUDA_CHECK(cudaMalloc(&dout, xb));
    MOE_CUDA_CHECK(cudaMalloc(&da, a.size() * sizeof(TokenAssignment)));
    MOE_CUDA_CHECK(cudaMemcpy(da, a.data(), a.size() * sizeof(TokenAssignment), cudaMemcpyHostToDevice));
    MOE_CUDA_CHECK(cudaMemcpy(dx, x1.data(), xb, cudaMemcpyHostToDevice));
    // Pageable cudaMemcpy may return before its DMA lands; `stream` (non-blocking) does not wait for it.
    MOE_CUDA_CHECK(cudaDeviceSynchronize());
    cudaStream_t stream;
    MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    DeviceForwardArgs args{2, dx, tokens, kHidden, da, static_cast<int64_t>(a.size()), dout};

    backend_->forward_device(args, stream);
    backend_->check_device_assignments(stream);
    std::vector<float> got(x1.size());
    MOE_CUDA_CHECK(cudaMemcpy(got.data(), dout, xb, cudaMemcpyDeviceToHost));
    EXPECT_LE(error_vs_reference(got, x1, tokens, a), 1e-2);

    // Capture once, then replay on new activations written into the same buffer.
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    MOE_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    backend_->forward_device(args, stream);
    MOE_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
    MOE_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    MOE_CUDA_CHECK(cudaMemcpyAsync(dx, x2.data(), xb, cudaMemcpyHostToDevice, stream));
    MOE_CUDA_CHECK(cudaMemsetAsync(dout, 0xff, xb, stream));  // NaN poison
    MOE_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    MOE_CUDA_CHECK(cudaStreamSynchronize(stream));
    MOE_CUDA_CHECK(cudaMemcpy(got.data(), dout, xb, cudaMemcpyDeviceToHost));
    EXPECT_LE(error_vs_reference(got, x2, tokens, a), 1e-2);

    // The host entry gives the same numbers (up to the order of atomic additions).
    const auto host = run(x2, tokens, a);
    double diff = 0, norm = 0;
    for (size_t i = 0; i < host.size(); ++i) {
      diff += (static_cast<double>(host[i]) - got[i]) * (static_cast<double>(host[i]) - got[i]);
      norm += static_cast<double>(host[i]) * host[i];
    }
    EXPECT_LE(std::sqrt(diff / norm), 1e-5);

    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    cudaStreamDestroy(stream);
    cudaFree(dx);
    cudaFree(dout);
    cudaFree(da);
  }
}

TEST_F(CudaBackendApi, DeviceEntryReportsInvalidAssignments) {
  const std::vector<TokenAssignment> a = {{0, 1, 1.f}, {0, 42, 1.f}, {5, 2, 1.f}};  // unloaded expert, bad token
  const auto x = random_activations(2, kHidden, rng_);
  float* dx = nullptr;
  float* dout = nullptr;
  TokenAssignment* da = nullptr;
  MOE_CUDA_CHECK(cudaMalloc(&dx, x.size() * sizeof(float)));
  MOE_CUDA_CHECK(cudaMalloc(&dout, x.size() * sizeof(float)));
  MOE_CUDA_CHECK(cudaMalloc(&da, a.size() * sizeof(TokenAssignment)));
  MOE_CUDA_CHECK(cudaMemcpy(dx, x.data(), x.size() * sizeof(float), cudaMemcpyHostToDevice));
  MOE_CUDA_CHECK(cudaMemcpy(da, a.data(), a.size() * sizeof(TokenAssignment), cudaMemcpyHostToDevice));
  backend_->forward_device({2, dx, 2, kHidden, da, 3, dout}, nullptr);
  EXPECT_THROW(backend_->check_device_assignments(nullptr), std::invalid_argument);
  EXPECT_NO_THROW(backend_->check_device_assignments(nullptr));  // the record was cleared
  // The valid assignment was still computed.
  std::vector<float> got(x.size());
  MOE_CUDA_CHECK(cudaMemcpy(got.data(), dout, got.size() * sizeof(float), cudaMemcpyDeviceToHost));
  const std::vector<TokenAssignment> valid = {{0, 1, 1.f}};
  EXPECT_LE(error_vs_reference(got, x, 2, valid), 1e-2);
  cudaFree(dx);
  cudaFree(dout);
  cudaFree(da);
}

TEST_F(CudaBackendApi, ConcurrentCallersGetTheirOwnResults) {
  constexpr int kThreads = 4;
  std::vector<std::vector<float>> xs, outs(kThreads);
  std::vector<std::vector<TokenAssignment>> as;
  for (int i = 0; i < kThreads; ++i) {
    const int64_t tokens = 5 + 30 * i;  // both paths
    xs.push_back(random_activations(tokens, kHidden, rng_));
    RoutingSpec routing{tokens, 2, {0, 1, 2, 3, 4, 5}, 0};
    as.push_back(random_routing(routing, rng_));
  }
  std::vector<std::thread> threads;
  std::vector<std::string> errors(kThreads);
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      try {
        for (int rep = 0; rep < 5; ++rep) outs[i] = run(xs[i], 5 + 30 * i, as[i]);
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kThreads; ++i) {
    EXPECT_EQ(errors[i], "");
    EXPECT_LE(error_vs_reference(outs[i], xs[i], 5 + 30 * i, as[i]), 1e-2) << "thread " << i;
  }
}

}  // namespace
}  // namespace moe::cuda_test
