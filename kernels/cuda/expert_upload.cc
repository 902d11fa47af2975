// Expert layout checks and upload to device memory (see expert_upload.h).
#include "kernels/cuda/expert_upload.h"

#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/kernel_api.h"
#include "runtime/core/dtype.h"

namespace moe::cuda {
namespace {

constexpr int64_t kMaxDim = int64_t{1} << 20;

std::string shape_of(const WeightMatrixView& m) {
  return "[" + std::to_string(m.rows) + ", " + std::to_string(m.cols) + "]";
}

std::string expert_name(ExpertKey key) {
  return "expert (layer " + std::to_string(key.layer) + ", expert " + std::to_string(key.expert) + ")";
}

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// Copies a [rows, cols] matrix into a [rows, padded_cols] bf16 region of device memory.
void upload_matrix(const WeightMatrixView& m, int64_t padded_cols, uint16_t* dst, cudaStream_t stream) {
  const void* src = m.data;
  std::vector<uint16_t> converted;
  if (m.dtype != DType::BF16) {
    const size_t n = static_cast<size_t>(m.rows * m.cols);
    converted.resize(n);
    if (m.dtype == DType::F32) {
      for (size_t i = 0; i < n; ++i) converted[i] = f32_to_bf16(load_unaligned<float>(m.data, i));
    } else {
      for (size_t i = 0; i < n; ++i) converted[i] = f32_to_bf16(f16_to_f32(load_unaligned<uint16_t>(m.data, i)));
    }
    src = converted.data();
  }
  const size_t row_bytes = static_cast<size_t>(m.cols) * 2;
  MOE_CUDA_CHECK(cudaMemcpy2DAsync(dst, static_cast<size_t>(padded_cols) * 2, src, row_bytes, row_bytes,
                                   static_cast<size_t>(m.rows), cudaMemcpyHostToDevice, stream));
  MOE_CUDA_CHECK(cudaStreamSynchronize(stream));  // `converted` must outlive the copy
}

}  // namespace

ExpertLayout expert_layout(ExpertKey key, const ExpertWeightsView& w) {
  const std::string name = expert_name(key);
  if (w.gate.data == nullptr || w.up.data == nullptr || w.down.data == nullptr) {
    throw std::invalid_argument("cuda backend: " + name + " has a null gate, up or down matrix");
  }
  // The kernels compute the SiLU GLU without biases, output scaled by the routing weight.
  if (!w.math.is_default() || w.has_biases()) {
    throw std::invalid_argument("cuda backend: " + name + " needs " + activation_name(w.math.activation) +
                                (w.has_biases() ? " with biases" : "") +
                                (w.math.weight_scales_input ? " with the routing weight on its input" : "") +
                                ", which this backend does not compute yet: use the CPU backend");
  }
  for (const WeightMatrixView* m : {&w.gate, &w.up, &w.down}) {
    if (m->dtype != DType::F32 && m->dtype != DType::BF16 && m->dtype != DType::F16) {
      throw std::invalid_argument("cuda backend: " + name + " has a matrix of unknown dtype " +
                                  std::to_string(static_cast<int>(m->dtype)));
    }
  }
  if (w.gate.rows != w.up.rows || w.gate.cols != w.up.cols) {
    throw std::invalid_argument("cuda backend: " + name + ": gate is " + shape_of(w.gate) + " but up is " +
                                shape_of(w.up) + " (both must be [intermediate, hidden])");
  }
  if (w.down.rows != w.gate.cols || w.down.cols != w.gate.rows) {
    throw std::invalid_argument("cuda backend: " + name + ": down is " + shape_of(w.down) + ", expected [" +
                                std::to_string(w.gate.cols) + ", " + std::to_string(w.gate.rows) +
                                "] (hidden, intermediate) to match gate " + shape_of(w.gate));
  }
  if (w.gate.rows <= 0 || w.gate.cols <= 0 || w.gate.rows > kMaxDim || w.gate.cols > kMaxDim) {
    throw std::invalid_argument("cuda backend: " + name + ": gate is " + shape_of(w.gate) +
                                ", expected sizes in [1, " + std::to_string(kMaxDim) + "]");
  }
  ExpertLayout l;
  l.hidden = w.gate.cols;
  l.inter = w.gate.rows;
  l.hidden_padded = round_up(l.hidden, kPadK);
  l.inter_padded = round_up(l.inter, kPadK);
  l.gate_offset = 0;
  l.up_offset = static_cast<size_t>(l.inter * l.hidden_padded);
  l.down_offset = 2 * l.up_offset;
  l.bytes = (l.down_offset + static_cast<size_t>(l.hidden * l.inter_padded)) * 2;
  return l;
}

void upload_expert(const ExpertWeightsView& w, const ExpertLayout& l, void* slot, cudaStream_t stream) {
  auto* base = static_cast<uint16_t*>(slot);
  if (l.hidden != l.hidden_padded || l.inter != l.inter_padded) {
    MOE_CUDA_CHECK(cudaMemsetAsync(slot, 0, l.bytes, stream));
  }
  upload_matrix(w.gate, l.hidden_padded, base + l.gate_offset, stream);
  upload_matrix(w.up, l.hidden_padded, base + l.up_offset, stream);
  upload_matrix(w.down, l.inter_padded, base + l.down_offset, stream);
}

}  // namespace moe::cuda
