// Converting tensors between their stored dtype and f32: reading views as Matrix / float vectors, and
// encoding floats as F32, BF16 or F16 bytes for writing.
#include <cstring>

#include "runtime/model/model_error.h"
#include "runtime/model/safetensors_file.h"

namespace moe {

std::vector<float> tensor_to_floats(const TensorView& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  if (out.size() * dtype_size(t.dtype) != t.nbytes)
    throw ModelError("tensor '" + t.name + "' holds " + std::to_string(t.nbytes) + " bytes, shape " +
                     t.shape_string() + " of " + dtype_name(t.dtype) + " needs " +
                     std::to_string(out.size() * dtype_size(t.dtype)));
  convert_to_f32(t.dtype, t.data, out.data(), out.size());
  return out;
}

Matrix tensor_to_matrix(const TensorView& t, int64_t expect_rows, int64_t expect_cols) {
  auto dim = [](int64_t d) { return d < 0 ? std::string("?") : std::to_string(d); };
  if (t.shape.size() != 2 || (expect_rows >= 0 && t.shape[0] != expect_rows) ||
      (expect_cols >= 0 && t.shape[1] != expect_cols))
    throw ModelError("tensor '" + t.name + "' has shape " + t.shape_string() + ", expected [" + dim(expect_rows) +
                     ", " + dim(expect_cols) + "]");
  Matrix m;
  m.rows = t.shape[0];
  m.cols = t.shape[1];
  m.data = tensor_to_floats(t);
  return m;
}

Matrix read_matrix(const SafetensorsFile& file, const std::string& name, int64_t expect_rows, int64_t expect_cols) {
  return tensor_to_matrix(file.tensor(name), expect_rows, expect_cols);
}

uint16_t f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0u));
  if (absx >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 rounds to inf
  const uint32_t exp = absx >> 23;
  const uint32_t mant = absx & 0x7fffffu;
  if (absx < 0x38800000u) {                                     // below 2^-14: f16 subnormal or zero
    if (absx < 0x33000000u) return static_cast<uint16_t>(sign);  // < 2^-25 (a tie at 2^-25 goes to 0)
    const uint32_t full = mant | 0x800000u;
    const uint32_t shift = 126u - exp;  // value in units of 2^-24 is full >> shift
    uint32_t r = full >> shift;
    const uint32_t rem = full & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return static_cast<uint16_t>(sign | r);
  }
  uint32_t r = ((exp - 112u) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
  return static_cast<uint16_t>(sign | r);
}

std::vector<std::byte> encode_floats(std::span<const float> values, DType dtype) {
  std::vector<std::byte> out(values.size() * dtype_size(dtype));
  switch (dtype) {
    case DType::F32:
      if (!values.empty()) std::memcpy(out.data(), values.data(), out.size());
      break;
    case DType::BF16:
    case DType::F16:
      for (size_t i = 0; i < values.size(); ++i) {
        uint16_t h = dtype == DType::BF16 ? f32_to_bf16(values[i]) : f32_to_f16(values[i]);
        std::memcpy(out.data() + 2 * i, &h, 2);
      }
      break;
  }
  return out;
}

}  // namespace moe
