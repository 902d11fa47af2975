// Owned expert weight copies (see expert_copy.h).
#include "worker/expert_copy.h"

#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

namespace moe {

namespace {
struct OwnedExpert {
  OwnedMatrix gate, up, down;
};

WeightMatrixView view_of(const OwnedMatrix& m, const char* name) {
  const size_t expected = static_cast<size_t>(m.rows) * static_cast<size_t>(m.cols) * dtype_size(m.dtype);
  if (m.rows < 0 || m.cols < 0 || m.bytes.size() != expected) {
    throw std::invalid_argument(std::string("expert matrix ") + name + ": " + std::to_string(m.bytes.size()) +
                                " bytes for [" + std::to_string(m.rows) + " x " + std::to_string(m.cols) + "] " +
                                dtype_name(m.dtype) + ", expected " + std::to_string(expected));
  }
  return {m.dtype, m.bytes.data(), m.rows, m.cols};
}

OwnedMatrix copy_as_f32_or_same(const WeightMatrixView& v) {
  OwnedMatrix m;
  m.rows = v.rows;
  m.cols = v.cols;
  const size_t n = static_cast<size_t>(v.rows) * static_cast<size_t>(v.cols);
  if (v.dtype != DType::F16) {
    m.dtype = v.dtype;
    m.bytes.resize(n * dtype_size(v.dtype));
    std::memcpy(m.bytes.data(), v.data, m.bytes.size());
    return m;
  }
  m.dtype = DType::F32;
  m.bytes.resize(n * sizeof(float));
  for (size_t i = 0; i < n; ++i) {
    float f = f16_to_f32(load_unaligned<uint16_t>(v.data, i));
    std::memcpy(m.bytes.data() + i * sizeof(float), &f, sizeof(float));
  }
  return m;
}
}  // namespace

ExpertWeights make_owned_weights(OwnedMatrix gate, OwnedMatrix up, OwnedMatrix down) {
  auto owned = std::make_shared<OwnedExpert>(OwnedExpert{std::move(gate), std::move(up), std::move(down)});
  ExpertWeights weights;
  weights.view.gate = view_of(owned->gate, "gate");
  weights.view.up = view_of(owned->up, "up");
  weights.view.down = view_of(owned->down, "down");
  weights.owner = std::move(owned);
  return weights;
}

ExpertWeights without_f16(ExpertWeights weights) {
  const ExpertWeightsView& v = weights.view;
  if (v.gate.dtype != DType::F16 && v.up.dtype != DType::F16 && v.down.dtype != DType::F16) return weights;
  return make_owned_weights(copy_as_f32_or_same(v.gate), copy_as_f32_or_same(v.up), copy_as_f32_or_same(v.down));
}

}  // namespace moe
