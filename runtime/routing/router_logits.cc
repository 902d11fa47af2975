// Router logits and the shared-expert gate through OpenBLAS (E×H is small, but T×E×H is not: for
// T=1024, E=256, H=7168 a plain loop would take ~1 s where sgemm takes tens of milliseconds).
#include "runtime/routing/router_logits.h"

#include <cblas.h>

#include <cmath>

#include "kernels/cpu/streaming_kernels.h"

namespace moe {

Matrix router_logits(const Matrix& x, const Matrix& gate) {
  Matrix logits(x.rows, gate.rows);
  if (x.rows == 0 || gate.rows == 0) return logits;
  if (x.rows == 1) {  // decode: one token; sgemv is ~2.5x faster than an M=1 sgemm here
    cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(gate.rows), static_cast<int>(gate.cols),
                1.f, gate.data.data(), static_cast<int>(gate.cols), x.data.data(), 1, 0.f,
                logits.data.data(), 1);
    return logits;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(x.rows),
              static_cast<int>(gate.rows), static_cast<int>(x.cols), 1.f, x.data.data(),
              static_cast<int>(x.cols), gate.data.data(), static_cast<int>(gate.cols), 0.f,
              logits.data.data(), static_cast<int>(gate.rows));
  return logits;
}

Matrix router_logits_rowwise(const Matrix& x, const Matrix& gate) {
  Matrix logits(x.rows, gate.rows);
  if (gate.rows == 0) return logits;
  for (int64_t t = 0; t < x.rows; ++t) {
    const float* row = x.row(t);
    rows_dot_tokens(gate.data.data(), gate.cols, 0, gate.rows, &row, 1, x.cols, logits.row(t), gate.rows);
  }
  return logits;
}

std::vector<float> sigmoid_gate_rowwise(const Matrix& x, const std::vector<float>& w) {
  std::vector<float> out(static_cast<size_t>(x.rows), 0.f);
  for (int64_t t = 0; t < x.rows; ++t) {
    const float* row = x.row(t);
    rows_dot_tokens(w.data(), x.cols, 0, 1, &row, 1, x.cols, &out[static_cast<size_t>(t)], 1);
    out[static_cast<size_t>(t)] = sigmoid(out[static_cast<size_t>(t)]);
  }
  return out;
}

float sigmoid(float v) { return 1.f / (1.f + std::exp(-v)); }

std::vector<float> sigmoid_gate(const Matrix& x, const std::vector<float>& w) {
  std::vector<float> out(static_cast<size_t>(x.rows), 0.f);
  if (x.rows == 0) return out;
  cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(x.rows),
              static_cast<int>(x.cols), 1.f, x.data.data(), static_cast<int>(x.cols),
              w.data(), 1, 0.f, out.data(), 1);
  for (float& v : out) v = sigmoid(v);
  return out;
}

}  // namespace moe
