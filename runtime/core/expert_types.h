// The vocabulary of expert weights and routing shared by every part (part of moe_core, header-only, so
// linking it pulls in no compute library): weight views, an expert's math, ExpertKey, TokenAssignment.
#pragma once

#include <compare>
#include <cstdint>

#include "runtime/core/dtype.h"

namespace moe {

// A row-major [rows, cols] matrix in some dtype, not owned.
struct WeightMatrixView {
  DType dtype = DType::F32;
  const void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
};

// A vector of `size` elements in some dtype, not owned. data == nullptr: absent.
struct WeightVectorView {
  DType dtype = DType::F32;
  const void* data = nullptr;
  int64_t size = 0;
};

enum class ExpertActivation : uint8_t {
  SiluGlu = 0,        // silu(g) * u
  ClampedSwiglu = 1,  // gpt-oss: g = min(g, limit), u = clamp(u, -limit, limit), (u + 1) * g * sigmoid(alpha * g)
};

// What an expert computes besides its matrices. Part of the weights, so a worker needs no family code.
struct ExpertMath {
  ExpertActivation activation = ExpertActivation::SiluGlu;
  float swiglu_alpha = 1.702f;  // ClampedSwiglu only
  float swiglu_limit = 7.f;     // ClampedSwiglu only
  // llama4: the routing weight multiplies the expert's input (expert(w·x)), and the output is added
  // with weight 1. Otherwise the output is multiplied by w.
  bool weight_scales_input = false;
  bool is_default() const {
    return activation == ExpertActivation::SiluGlu && !weight_scales_input;
  }
};

// gate and up are [intermediate, hidden]; down is [hidden, intermediate] (HF Linear layout).
// Biases (gpt-oss) are [intermediate] (gate, up) and [hidden] (down), or absent.
struct ExpertWeightsView {
  WeightMatrixView gate;
  WeightMatrixView up;
  WeightMatrixView down;
  WeightVectorView gate_bias;
  WeightVectorView up_bias;
  WeightVectorView down_bias;
  ExpertMath math;
  bool has_biases() const { return gate_bias.data || up_bias.data || down_bias.data; }
};

inline const char* activation_name(ExpertActivation a) {
  return a == ExpertActivation::SiluGlu ? "silu_glu" : "clamped_swiglu";
}

struct ExpertKey {
  int32_t layer = 0;
  int32_t expert = 0;
  auto operator<=>(const ExpertKey&) const = default;
};

struct TokenAssignment {
  int32_t token = 0;   // row of x
  int32_t expert = 0;  // expert id within the layer
  float weight = 0.f;  // routing weight applied to this expert's output
};

}  // namespace moe
