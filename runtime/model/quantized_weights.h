// Dequantization of expert weights as the real releases ship them, done once when an expert is loaded:
//   FP8 block quantization (DeepSeek-V3 style, quant_method "fp8"): weight F8_E4M3 [R, C] and
//     weight_scale_inv [ceil(R/br), ceil(C/bc)] (F32 or BF16); w[r, c] = fp8(w) · scale_inv[r/br, c/bc]
//     (edge blocks are partial when R or C is not a multiple of the block).
//   MXFP4 (gpt-oss, quant_method "mxfp4"): *_blocks U8 [rows, G, 16] (two e2m1 values a byte, low nibble
//     first) and *_scales U8 [rows, G] (e8m0: 2^(s - 127)); row r holds G·32 values.
// Every check failure is one ModelError line naming the tensors, the shapes expected and found.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/model/safetensors_file.h"

namespace moe {

float fp8_e4m3_to_f32(uint8_t v);
float e2m1_to_f32(uint8_t nibble);

// out[R * C] f32. `what` names the weight in errors.
void dequantize_fp8_block(const TensorView& weight, const TensorView& scale_inv, int64_t block_rows,
                          int64_t block_cols, float* out);

// Rows [row0, row0 + rows) of an MXFP4 pair with blocks [..., G, 16] and scales [..., G], the leading
// dims flattened to rows; out[rows * G * 32] f32. Checks that the two tensors agree and the range fits.
void dequantize_mxfp4_rows(const TensorView& blocks, const TensorView& scales, int64_t row0, int64_t rows, float* out);

}  // namespace moe
