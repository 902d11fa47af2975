// Expert GEMMs on Intel AMX (TDPBF16PS) for the CPU backend, on CPUs that have AMX-BF16, and the same
// products with AVX512_BF16 dot products (vdpbf16ps) on CPUs that have that but no AMX.
//
// Weights are packed once, at load, into the tile layout: for each matrix [rows, cols] (HF Linear
// layout, out x in), panels of 16 output rows; in each panel, k in pairs (VNNI), so one 1 KiB block
// [16 k-pairs][16 rows][2] is one B tile of 32 k. bf16 weights stay bf16 (one plane, half the bytes of
// f32); f32 and f16 weights are split into two bf16 planes hi + lo (w = hi + lo to 2^-17 relative, the
// same bytes as f32). Activations are split the same way (x = hi + lo), and each product sums
// hi·hi + lo·hi (+ hi·lo for two weight planes), accumulated in f32 by the tiles: results match an f32
// computation to about 1e-5 relative, within the parity tests' 1e-4 (a single bf16 pass is ~1e-2).
//
// Activations are blocked the same way as tiles: [token block of 16][k step of 32][16 rows][32 k],
// each A tile 1 KiB contiguous; rows past the last token and k past the last column are zero.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include "kernels/expert_backend.h"

namespace moe {

// True when the CPU has AMX-BF16 and the kernel granted this process the tile state (asked once).
bool amx_available();
// True when the CPU has AVX512_BF16 (with AVX512BW/VL): the same packed weights, multiplied with
// vdpbf16ps instead of tiles (AMD Zen 4/5, Intel Cooper Lake and later).
bool avx512bf16_available();

// What multiplies the packed weights: AMX tiles, or AVX512_BF16 dot products on the same layout.
enum class PackedEngine { Amx, Avx512Bf16 };

// A 64-byte aligned array of bf16 bit patterns, zero-filled.
class AlignedBf16 {
 public:
  AlignedBf16() = default;
  explicit AlignedBf16(size_t n);
  uint16_t* data() { return data_.get(); }
  const uint16_t* data() const { return data_.get(); }
  size_t size() const { return size_; }

 private:
  struct Free {
    void operator()(uint16_t* p) const { std::free(p); }
  };
  std::unique_ptr<uint16_t, Free> data_;
  size_t size_ = 0;
};

// One weight matrix in the tile layout. panels is even (pairs of panels share a kernel call).
struct AmxMatrix {
  int64_t rows = 0, cols = 0;
  int64_t panels = 0;  // ceil(rows / 32) * 2
  int64_t ksteps = 0;  // ceil(cols / 32)
  int planes = 1;      // 1: bf16 weights; 2: hi + lo of f32 (or f16) weights
  AlignedBf16 data;    // [planes][panels][ksteps][16 k-pairs][16 rows][2]
  const uint16_t* tile(int plane, int64_t panel, int64_t kstep) const {
    return data.data() + ((static_cast<size_t>(plane) * panels + panel) * ksteps + kstep) * 512;
  }
  size_t bytes() const { return data.size() * sizeof(uint16_t); }
};

// planes 1 needs bf16 weights (kept as they are); planes 2 takes any dtype (a bf16 matrix gets lo = 0).
AmxMatrix pack_amx_matrix(const WeightMatrixView& w, int planes);

struct AmxExpert {
  AmxMatrix gate, up;  // [I, H] each
  AmxMatrix down;      // [H, I]
  size_t bytes() const { return gate.bytes() + up.bytes() + down.bytes(); }
};

// Activations of a group of tokens split into hi and lo planes in the blocked layout.
struct AmxActivations {
  int64_t token_blocks = 0, ksteps = 0;
  uint16_t* hi = nullptr;  // [token_blocks][ksteps][16][32]
  uint16_t* lo = nullptr;
  static size_t elements(int64_t tokens, int64_t cols) {  // per plane
    return static_cast<size_t>((tokens + 15) / 16) * static_cast<size_t>((cols + 31) / 32) * 512;
  }
};

// Writes rows[j][0:cols] (j < n) into a (hi, lo) in the blocked layout; the padding must already be zero.
void amx_split_rows(const float* const* rows, int n, int64_t cols, AmxActivations& a);

// For gate/up panels [p0, p1) and every token block: act = silu(x·gateᵀ) ⊙ (x·upᵀ) into `act`
// (blocked, hi + lo; its k steps are the intermediate columns).
// row_invariant (the deterministic mode): a lone token block (the last of an odd number) sums its
// products in the paired blocks' order instead of the lone schedule's (hi and lo products in separate
// tiles, added at the end), so a token's bits do not depend on the group's row count.
void amx_gate_up(PackedEngine engine, const AmxExpert& e, const AmxActivations& x, int64_t p0, int64_t p1,
                 AmxActivations& act, bool row_invariant = false);

// For down panel pairs [pair0, pair1) and every token block: y[t, h] = act[t]·down[h] for t < n and the
// panels' rows h < hidden; y is row-major with leading dimension ldy.
void amx_down(PackedEngine engine, const AmxExpert& e, const AmxActivations& act, int64_t n, int64_t pair0,
              int64_t pair1, float* y, int64_t ldy, bool row_invariant = false);

}  // namespace moe
