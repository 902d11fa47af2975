// FP8 block and MXFP4 dequantization (see quantized_weights.h).
#include "runtime/model/quantized_weights.h"

#include <cmath>
#include <cstring>

#include "runtime/core/dtype.h"
#include "runtime/model/model_error.h"

namespace moe {
namespace {

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

float scale_at(const TensorView& s, int64_t i) {
  if (s.dtype_name == "F32") {
    float f;
    std::memcpy(&f, static_cast<const char*>(s.data) + 4 * i, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, static_cast<const char*>(s.data) + 2 * i, 2);
  return s.dtype_name == "BF16" ? bf16_to_f32(h) : f16_to_f32(h);
}

}  // namespace

float fp8_e4m3_to_f32(uint8_t v) {
  const uint32_t sign = v >> 7, exp = (v >> 3) & 0xf, mant = v & 0x7;
  float mag;
  if (exp == 0xf && mant == 0x7) mag = NAN;  // e4m3fn: no infinities, one NaN pattern
  else if (exp == 0) mag = std::ldexp(static_cast<float>(mant), -9);  // subnormal: mant/8 · 2^-6
  else mag = std::ldexp(1.f + static_cast<float>(mant) / 8.f, static_cast<int>(exp) - 7);
  return sign ? -mag : mag;
}

float e2m1_to_f32(uint8_t nibble) {
  static constexpr float kValues[16] = {+0.f, +0.5f, +1.f, +1.5f, +2.f, +3.f, +4.f, +6.f,
                                        -0.f, -0.5f, -1.f, -1.5f, -2.f, -3.f, -4.f, -6.f};
  return kValues[nibble & 0xf];
}

void dequantize_fp8_block(const TensorView& w, const TensorView& s, int64_t br, int64_t bc, float* out) {
  if (w.dtype_name != "F8_E4M3")
    throw ModelError("tensor '" + w.name + "' is " + w.dtype_name + ", expected F8_E4M3 for fp8 block quantization");
  if (w.shape.size() != 2) throw ModelError("tensor '" + w.name + "' has shape " + shape_str(w.shape) + ", expected 2-D");
  if (s.dtype_name != "F32" && s.dtype_name != "BF16" && s.dtype_name != "F16")
    throw ModelError("scale tensor '" + s.name + "' is " + s.dtype_name + ", expected F32, BF16 or F16");
  const int64_t rows = w.shape[0], cols = w.shape[1];
  const int64_t srows = (rows + br - 1) / br, scols = (cols + bc - 1) / bc;
  if (s.shape != std::vector<int64_t>{srows, scols})
    throw ModelError("scale tensor '" + s.name + "' has shape " + shape_str(s.shape) + ", expected " +
                     shape_str({srows, scols}) + " for weight " + shape_str(w.shape) + " in blocks of [" +
                     std::to_string(br) + ", " + std::to_string(bc) + "]");
  const auto* q = static_cast<const uint8_t*>(w.data);
  float lut[256];
  for (int i = 0; i < 256; ++i) lut[i] = fp8_e4m3_to_f32(static_cast<uint8_t>(i));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c0 = 0; c0 < cols; c0 += bc) {
      const float scale = scale_at(s, (r / br) * scols + c0 / bc);
      const int64_t c1 = std::min(cols, c0 + bc);
      for (int64_t c = c0; c < c1; ++c) out[r * cols + c] = lut[q[r * cols + c]] * scale;
    }
  }
}

void dequantize_mxfp4_rows(const TensorView& blocks, const TensorView& scales, int64_t row0, int64_t rows,
                           float* out) {
  if (blocks.dtype_name != "U8" || scales.dtype_name != "U8")
    throw ModelError("mxfp4 tensors '" + blocks.name + "' (" + blocks.dtype_name + ") and '" + scales.name + "' (" +
                     scales.dtype_name + ") must both be U8");
  if (blocks.shape.size() < 3 || blocks.shape.back() != 16)
    throw ModelError("mxfp4 blocks '" + blocks.name + "' has shape " + shape_str(blocks.shape) +
                     ", expected [..., groups, 16]");
  std::vector<int64_t> want_scales(blocks.shape.begin(), blocks.shape.end() - 1);
  if (scales.shape != want_scales)
    throw ModelError("mxfp4 scales '" + scales.name + "' has shape " + shape_str(scales.shape) + ", expected " +
                     shape_str(want_scales) + " to match blocks " + shape_str(blocks.shape));
  const int64_t groups = blocks.shape[blocks.shape.size() - 2];
  int64_t total_rows = 1;
  for (size_t i = 0; i + 2 < blocks.shape.size(); ++i) total_rows *= blocks.shape[i];
  if (row0 < 0 || rows < 0 || row0 + rows > total_rows)
    throw ModelError("mxfp4 blocks '" + blocks.name + "': rows [" + std::to_string(row0) + ", " +
                     std::to_string(row0 + rows) + ") outside its " + std::to_string(total_rows) + " rows");
  const auto* b = static_cast<const uint8_t*>(blocks.data) + row0 * groups * 16;
  const auto* e = static_cast<const uint8_t*>(scales.data) + row0 * groups;
  for (int64_t g = 0; g < rows * groups; ++g) {
    const int exponent = static_cast<int>(e[g]) - 127;
    float* dst = out + g * 32;
    for (int i = 0; i < 16; ++i) {
      dst[2 * i] = std::ldexp(e2m1_to_f32(b[g * 16 + i] & 0xf), exponent);
      dst[2 * i + 1] = std::ldexp(e2m1_to_f32(b[g * 16 + i] >> 4), exponent);
    }
  }
}

}  // namespace moe
