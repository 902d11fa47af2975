// CublasExpertPath: one layer's experts as per-expert cuBLAS GEMMs (see cublas_expert_path.h).
//   gather  xs[r] = bf16(x[sorted_token[r]])                              [rows][Hp]
//   GEMM    gu[rows of e] = xs[rows of e] . [gate_e; up_e]^T  (per expert) [rows][2 Ip_max] bf16
//   swiglu  h[r] = silu(gu[r][0, I_e)) * gu[r][I_e, 2 I_e)                [rows][Ip_max] bf16 (args.h)
//   GEMM    y[rows of e] = h[rows of e] . down_e^T             (per expert) [rows][ld_y] f32
//   scatter out[sorted_token[r]] += sorted_weight[r] * y[r]
// The cuBLAS dimensions come from plan_cublas_expert_gemms (cublas_expert_plan.h), which also holds the
// column-major mapping of these row-major products.
#include "kernels/cuda/cublas_expert_path.h"

#include <cublas_v2.h>

#include <cstddef>
#include <stdexcept>
#include <string>

#include "kernels/cuda/cublas_expert_kernels.h"
#include "kernels/cuda/cuda_check.h"

namespace moe::cuda {
namespace {

constexpr size_t kCublasWorkspaceBytes = size_t{32} << 20;  // NVIDIA's recommendation for Hopper

[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* call, const std::string& detail,
                                     const char* file, int line) {
  throw std::runtime_error(std::string("cuBLAS call failed: ") + call + " at " + file + ":" + std::to_string(line) +
                           (detail.empty() ? "" : " (" + detail + ")") + ": " + cublasGetStatusName(status) + " (" +
                           cublasGetStatusString(status) + ")");
}

}  // namespace
}  // namespace moe::cuda

// `detail` (a std::string expression) is only evaluated when the call failed.
#define MOE_CUBLAS_CHECK(call, detail)                                                         \
  do {                                                                                         \
    const cublasStatus_t moe_cublas_status_ = (call);                                          \
    if (moe_cublas_status_ != CUBLAS_STATUS_SUCCESS) {                                         \
      ::moe::cuda::throw_cublas_error(moe_cublas_status_, #call, (detail), __FILE__, __LINE__); \
    }                                                                                          \
  } while (0)

namespace moe::cuda {
namespace {

std::string describe_gemm(const char* which, int32_t expert, const CublasGemmDims& d) {
  return std::string(which) + " of expert " + std::to_string(expert) + ": m=" + std::to_string(d.m) +
         " n=" + std::to_string(d.n) + " k=" + std::to_string(d.k) + " lda=" + std::to_string(d.lda) +
         " ldb=" + std::to_string(d.ldb) + " ldc=" + std::to_string(d.ldc);
}

// Row-major C[n][ldc] (first m columns) = X[n][ldb] (first k) . W[m][lda]^T (first k), bf16 inputs,
// fp32 compute: cuBLAS C^T (m x n) = op_T(W) . op_N(X^T).
void gemm_bf16(cublasHandle_t handle, const CublasGemmDims& d, const bf16_bits* w, const bf16_bits* x, void* c,
               cudaDataType_t c_type, const char* which, int32_t expert) {
  const float alpha = 1.f;
  const float beta = 0.f;
  MOE_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, d.m, d.n, d.k, &alpha, w, CUDA_R_16BF, d.lda, x,
                                CUDA_R_16BF, d.ldb, &beta, c, c_type, d.ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                   describe_gemm(which, expert, d));
}

size_t bytes_of(int64_t rows, int64_t cols, size_t elem) {
  return static_cast<size_t>(rows) * static_cast<size_t>(cols) * elem;
}

}  // namespace

CublasExpertPath::CublasExpertPath() {
  MOE_CUDA_CHECK(cudaGetDevice(&device_));
  cublasHandle_t handle = nullptr;
  MOE_CUBLAS_CHECK(cublasCreate(&handle), "device " + std::to_string(device_));
  handle_ = handle;
  try {
    MOE_CUBLAS_CHECK(cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH), std::string());
    MOE_CUBLAS_CHECK(cublasSetPointerMode(handle, CUBLAS_POINTER_MODE_HOST), std::string());
    cublas_workspace_.reserve(kCublasWorkspaceBytes);
  } catch (...) {
    cublasDestroy(handle);
    handle_ = nullptr;
    throw;
  }
}

CublasExpertPath::~CublasExpertPath() {
  if (handle_ != nullptr) cublasDestroy(handle_);
}

void CublasExpertPath::enqueue(const ExpertLayerArgs& args, const RoutingWorkspace& ws, const float* x,
                               const int32_t* host_offsets, const ExpertDeviceEntry* host_entries,
                               cudaStream_t stream) {
  check_args(args, ws, x, host_offsets, host_entries);
  plan(args, host_offsets, host_entries);
  const int64_t rows = host_offsets[args.num_experts];
  if (rows == 0) return;
  reserve_scratch(args, rows);

  auto* xs = static_cast<bf16_bits*>(xs_.data());
  launch_gather_rows_bf16(x, ws.sorted_token, rows, args.hidden, args.hidden_padded, xs, stream);
  bind_stream(stream);
  gate_up_gemms(host_entries);
  launch_swiglu_rows(static_cast<const bf16_bits*>(gu_.data()), cublas_ld_gu(args.inter_padded_max), ws.offsets,
                     args.experts, args.num_experts, rows, args.h, args.inter_padded_max, stream);
  down_gemms(args, host_entries);
  launch_scatter_add_rows(static_cast<const float*>(y_.data()), cublas_ld_y(args.hidden), ws.sorted_token,
                          ws.sorted_weight, rows, args.hidden, args.out, stream);
}

void CublasExpertPath::check_args(const ExpertLayerArgs& args, const RoutingWorkspace& ws, const float* x,
                                  const int32_t* host_offsets, const ExpertDeviceEntry* host_entries) const {
  if (host_offsets == nullptr || args.num_experts <= 0 || host_entries == nullptr || args.experts == nullptr) {
    throw std::logic_error("cublas expert path: need host_offsets, host_entries and args.experts for " +
                           std::to_string(args.num_experts) + " experts");
  }
  if (host_offsets[args.num_experts] == 0) return;  // nothing will be read or written
  if (x == nullptr || args.out == nullptr || args.h == nullptr || ws.offsets == nullptr ||
      ws.sorted_token == nullptr || ws.sorted_weight == nullptr) {
    throw std::logic_error("cublas expert path: null x, args.out, args.h or routing list with " +
                           std::to_string(host_offsets[args.num_experts]) + " rows");
  }
  int device = -1;
  MOE_CUDA_CHECK(cudaGetDevice(&device));
  if (device != device_) {
    throw std::logic_error("cublas expert path: created on device " + std::to_string(device_) +
                           " but enqueue runs with device " + std::to_string(device) + " current");
  }
}

// Fills plan_ (throws before anything is enqueued) and checks that gate and up form one [2 I_e][Hp] matrix.
void CublasExpertPath::plan(const ExpertLayerArgs& args, const int32_t* host_offsets,
                            const ExpertDeviceEntry* host_entries) {
  dims_.resize(static_cast<size_t>(args.num_experts));
  for (int32_t e = 0; e < args.num_experts; ++e) {
    const ExpertDeviceEntry& entry = host_entries[e];
    dims_[static_cast<size_t>(e)] = CublasExpertDims{entry.gate != nullptr, entry.inter, entry.inter_padded};
  }
  const CublasLayerDims layer{args.num_assignments, args.hidden, args.hidden_padded, args.inter_padded_max};
  plan_cublas_expert_gemms(host_offsets, dims_.data(), args.num_experts, layer, plan_);
  for (const CublasExpertGemms& g : plan_) {
    const ExpertDeviceEntry& entry = host_entries[g.expert];
    if (entry.up != entry.gate + static_cast<int64_t>(entry.inter) * args.hidden_padded || entry.down == nullptr) {
      throw std::logic_error("cublas expert path: expert " + std::to_string(g.expert) +
                             ": up must follow gate directly (up == gate + I_e * Hp, I_e=" +
                             std::to_string(entry.inter) + ", Hp=" + std::to_string(args.hidden_padded) +
                             ") and down must be set");
    }
  }
}

void CublasExpertPath::reserve_scratch(const ExpertLayerArgs& args, int64_t rows) {
  xs_.reserve(bytes_of(rows, args.hidden_padded, sizeof(bf16_bits)));
  gu_.reserve(bytes_of(rows, cublas_ld_gu(args.inter_padded_max), sizeof(bf16_bits)));
  y_.reserve(bytes_of(rows, cublas_ld_y(args.hidden), sizeof(float)));
}

// cublasSetStream resets the handle's workspace to the default pool, so the own workspace follows it.
void CublasExpertPath::bind_stream(cudaStream_t stream) {
  MOE_CUBLAS_CHECK(cublasSetStream(handle_, stream), std::string());
  MOE_CUBLAS_CHECK(cublasSetWorkspace(handle_, cublas_workspace_.data(), cublas_workspace_.capacity()),
                   "workspace of " + std::to_string(cublas_workspace_.capacity()) + " bytes");
}

void CublasExpertPath::gate_up_gemms(const ExpertDeviceEntry* host_entries) {
  const auto* xs = static_cast<const bf16_bits*>(xs_.data());
  auto* gu = static_cast<bf16_bits*>(gu_.data());
  for (const CublasExpertGemms& g : plan_) {
    gemm_bf16(handle_, g.gate_up, host_entries[g.expert].gate, xs + g.xs_offset, gu + g.gu_offset, CUDA_R_16BF,
              "gate/up GEMM", g.expert);
  }
}

void CublasExpertPath::down_gemms(const ExpertLayerArgs& args, const ExpertDeviceEntry* host_entries) {
  auto* y = static_cast<float*>(y_.data());
  for (const CublasExpertGemms& g : plan_) {
    gemm_bf16(handle_, g.down, host_entries[g.expert].down, args.h + g.h_offset, y + g.y_offset, CUDA_R_32F,
              "down GEMM", g.expert);
  }
}

}  // namespace moe::cuda
