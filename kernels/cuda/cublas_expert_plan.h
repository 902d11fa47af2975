// Host-only planning of the cuBLAS prefill path (CublasExpertPath): from the per-expert row offsets and
// the experts' sizes, the list of experts with rows and the cuBLAS (column-major) dimensions and
// leading dimensions of their two GEMMs, with every check that needs no device. Plain C++ without CUDA
// headers, so CPU-only unit tests can include it.
//
// Row-major C[M][N] = A[M][K] * B[N][K]^T is, in cuBLAS's column-major terms,
//   C^T (N x M, ldc) = op_T(B: col-major K x N, ldb) * op_N(A^T: col-major K x M, lda),
// i.e. cublasGemmEx(OP_T, OP_N, m = N, n = M, k = K, W, ld_w, X, ld_x, C, ldc).
//   gate/up: W = [gate; up] row-major [2 I_e][Hp], X = xs rows of e [n_e][Hp], C = gu [n_e][ld_gu]:
//            m = 2 I_e, n = n_e, k = Hp, lda = Hp, ldb = Hp, ldc = ld_gu = 2 Ip_max.
//   down:    W = down row-major [H][Ip_e], X = h rows of e [n_e][Ip_max], C = y [n_e][ld_y]:
//            m = H, n = n_e, k = I_e, lda = Ip_e, ldb = Ip_max, ldc = ld_y.
#pragma once

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace moe::cuda {

// What the plan needs to know of one expert of the layer's table.
struct CublasExpertDims {
  bool loaded = false;       // entry.gate != nullptr
  int64_t inter = 0;         // I_e
  int64_t inter_padded = 0;  // Ip_e
};

// The layer's sizes and the path's scratch strides (in elements).
struct CublasLayerDims {
  int64_t num_assignments = 0;   // A: bound of the sorted rows (rows of h)
  int64_t hidden = 0;            // H
  int64_t hidden_padded = 0;     // Hp: row stride of xs and of gate/up
  int64_t inter_padded_max = 0;  // Ip_max: row stride of h
};

// One cublasGemmEx call (OP_T, OP_N), column-major terms.
struct CublasGemmDims {
  int m = 0;
  int n = 0;
  int k = 0;
  int lda = 0;
  int ldb = 0;
  int ldc = 0;
};

// One expert with rows: its sorted rows [row0, row0 + rows) and its two GEMMs.
struct CublasExpertGemms {
  int32_t expert = 0;
  int64_t row0 = 0;
  int64_t rows = 0;
  CublasGemmDims gate_up;
  CublasGemmDims down;
  // Elements from each scratch buffer's start to the expert's first row (row0 * that buffer's stride).
  int64_t xs_offset = 0;  // B of gate/up
  int64_t gu_offset = 0;  // C of gate/up
  int64_t h_offset = 0;   // B of down
  int64_t y_offset = 0;   // C of down
};

// Row stride of gu (bf16): gate in [0, I_e), up in [I_e, 2 I_e).
inline int64_t cublas_ld_gu(int64_t inter_padded_max) { return 2 * inter_padded_max; }

// Row stride of y (f32): H rounded up to 4 floats, so every row starts 16-byte aligned.
inline int64_t cublas_ld_y(int64_t hidden) { return (hidden + 3) / 4 * 4; }

namespace cublas_plan_detail {

inline int checked_int(int64_t value, const char* what, int32_t expert) {
  if (value < 0 || value > std::numeric_limits<int32_t>::max()) {
    throw std::invalid_argument("cublas expert path: " + std::string(what) + " = " + std::to_string(value) +
                                " of expert " + std::to_string(expert) + " does not fit a cuBLAS int");
  }
  return static_cast<int>(value);
}

inline void check_layer(const CublasLayerDims& layer) {
  if (layer.hidden <= 0 || layer.hidden_padded < layer.hidden || layer.hidden_padded % 8 != 0 ||
      layer.inter_padded_max <= 0 || layer.inter_padded_max % 8 != 0 || layer.num_assignments < 0) {
    throw std::logic_error("cublas expert path: bad layer sizes hidden=" + std::to_string(layer.hidden) +
                           " hidden_padded=" + std::to_string(layer.hidden_padded) + " inter_padded_max=" +
                           std::to_string(layer.inter_padded_max) + " num_assignments=" +
                           std::to_string(layer.num_assignments) +
                           " (need 0 < H <= Hp, Hp and Ip_max multiples of 8)");
  }
}

inline void check_expert(const CublasExpertDims& d, int32_t e, const CublasLayerDims& layer) {
  if (!d.loaded) {
    throw std::logic_error("cublas expert path: expert " + std::to_string(e) + " has rows but is not loaded");
  }
  if (d.inter <= 0 || d.inter_padded < d.inter || d.inter_padded > layer.inter_padded_max) {
    throw std::logic_error("cublas expert path: expert " + std::to_string(e) + " has inter=" +
                           std::to_string(d.inter) + " inter_padded=" + std::to_string(d.inter_padded) +
                           " (need 0 < I_e <= Ip_e <= Ip_max=" + std::to_string(layer.inter_padded_max) + ")");
  }
}

}  // namespace cublas_plan_detail

// Checks the offsets (offsets[0] == 0, non-decreasing, offsets[E] <= A) and the experts with rows
// (loaded, 0 < I_e <= Ip_e <= Ip_max), and fills `plan` with one entry per expert with rows, in expert
// order. Throws std::logic_error on inconsistent input, std::invalid_argument when a cuBLAS int
// would overflow. Returns the total number of rows, offsets[E].
inline int64_t plan_cublas_expert_gemms(const int32_t* offsets, const CublasExpertDims* experts, int32_t num_experts,
                                        const CublasLayerDims& layer, std::vector<CublasExpertGemms>& plan) {
  using cublas_plan_detail::checked_int;
  plan.clear();
  cublas_plan_detail::check_layer(layer);
  if (num_experts < 0 || offsets == nullptr || (num_experts > 0 && experts == nullptr)) {
    throw std::logic_error("cublas expert path: bad expert table (num_experts=" + std::to_string(num_experts) + ")");
  }
  if (offsets[0] != 0) {
    throw std::logic_error("cublas expert path: offsets[0] = " + std::to_string(offsets[0]) + ", expected 0");
  }
  const int64_t total = offsets[num_experts];
  if (total > layer.num_assignments) {
    throw std::logic_error("cublas expert path: offsets[" + std::to_string(num_experts) + "] = " +
                           std::to_string(total) + " exceeds the " + std::to_string(layer.num_assignments) +
                           " assignments");
  }
  const int64_t ld_gu = cublas_ld_gu(layer.inter_padded_max);
  const int64_t ld_y = cublas_ld_y(layer.hidden);
  for (int32_t e = 0; e < num_experts; ++e) {
    const int64_t row0 = offsets[e];
    const int64_t rows = static_cast<int64_t>(offsets[e + 1]) - row0;
    if (rows < 0) {
      throw std::logic_error("cublas expert path: offsets decrease at expert " + std::to_string(e) + " (" +
                             std::to_string(row0) + " -> " + std::to_string(offsets[e + 1]) + ")");
    }
    if (rows == 0) continue;
    const CublasExpertDims& d = experts[e];
    cublas_plan_detail::check_expert(d, e, layer);
    CublasExpertGemms g;
    g.expert = e;
    g.row0 = row0;
    g.rows = rows;
    g.gate_up.m = checked_int(2 * d.inter, "2 * inter (gate/up m)", e);
    g.gate_up.n = checked_int(rows, "rows (n)", e);
    g.gate_up.k = checked_int(layer.hidden_padded, "hidden_padded (gate/up k)", e);
    g.gate_up.lda = g.gate_up.k;
    g.gate_up.ldb = g.gate_up.k;
    g.gate_up.ldc = checked_int(ld_gu, "2 * inter_padded_max (ld of gu)", e);
    g.down.m = checked_int(layer.hidden, "hidden (down m)", e);
    g.down.n = g.gate_up.n;
    g.down.k = checked_int(d.inter, "inter (down k)", e);
    g.down.lda = checked_int(d.inter_padded, "inter_padded (ld of down)", e);
    g.down.ldb = checked_int(layer.inter_padded_max, "inter_padded_max (ld of h)", e);
    g.down.ldc = checked_int(ld_y, "ld of y", e);
    g.xs_offset = row0 * layer.hidden_padded;
    g.gu_offset = row0 * ld_gu;
    g.h_offset = row0 * layer.inter_padded_max;
    g.y_offset = row0 * ld_y;
    plan.push_back(g);
  }
  return total;
}

}  // namespace moe::cuda
