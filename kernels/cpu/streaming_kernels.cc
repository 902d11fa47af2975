// Streaming dot-product and SwiGLU kernels (see streaming_kernels.h). Written with GCC vector
// extensions so each target clone gets the widest registers it has.
#include "kernels/cpu/streaming_kernels.h"

#include <cstring>
#include <stdexcept>
#include <string>

// Helpers are always inlined so that they are compiled for the clone that calls them.
#define MOE_INLINE inline __attribute__((always_inline))
// Built for the baseline target only with clang (the fuzz build), which does not clone templates, and
// under TSan, whose instrumented ifunc resolvers run before its runtime is up (a crash at load time).
#if defined(__clang__) || defined(__SANITIZE_THREAD__)
#define MOE_CLONES
#else
#define MOE_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif

#pragma GCC diagnostic ignored "-Wpsabi"  // 64-byte vectors never cross a non-inlined call

namespace moe {
namespace {

typedef float Vec16 __attribute__((vector_size(64)));

MOE_INLINE Vec16 load16(const float* p) {
  Vec16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

typedef float Vec8 __attribute__((vector_size(32)));
typedef float Vec4 __attribute__((vector_size(16)));

// Tree reduction (halves added pairwise), so the clone's shuffles do it instead of a serial chain.
MOE_INLINE float hsum(Vec16 v) {
  Vec8 lo, hi;
  std::memcpy(&lo, &v, 32);
  std::memcpy(&hi, reinterpret_cast<const char*>(&v) + 32, 32);
  Vec8 s8 = lo + hi;
  Vec4 a, b;
  std::memcpy(&a, &s8, 16);
  std::memcpy(&b, reinterpret_cast<const char*>(&s8) + 16, 16);
  Vec4 s4 = a + b;
  return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

// R weight rows against N tokens: R*N accumulators, each weight vector loaded once.
template <int N, int R>
MOE_INLINE void dot_block(const float* w, int64_t ldw, const float* const* tokens, int64_t k, float* c,
                      int64_t ldc) {
  Vec16 acc[N][R] = {};
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    Vec16 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = load16(w + r * ldw + i);
    for (int j = 0; j < N; ++j) {
      Vec16 xv = load16(tokens[j] + i);
      for (int r = 0; r < R; ++r) acc[j][r] += wv[r] * xv;
    }
  }
  for (int j = 0; j < N; ++j) {
    for (int r = 0; r < R; ++r) {
      float s = hsum(acc[j][r]);
      for (int64_t t = i; t < k; ++t) s += w[r * ldw + t] * tokens[j][t];
      c[j * ldc + r] = s;
    }
  }
}

// Blocks of 4 weight rows; tokens in chunks of 4, each chunk one pass over the block, so the block is
// read from memory once and from L1 by the later chunks. 16 accumulators + 4 weight vectors + 1 token
// vector stay within the 32 AVX-512 registers.
template <int R>
MOE_CLONES void rows_dot_chunks(const float* w, int64_t ldw, int64_t row_begin, int64_t row_end,
                                const float* const* tokens, int num_tokens, int64_t k, float* c, int64_t ldc) {
  int64_t r = row_begin;
  for (; r + R <= row_end; r += R) {
    const float* block = w + r * ldw;
    float* dst = c + (r - row_begin);
    int j = 0;
    for (; j + 4 <= num_tokens; j += 4) dot_block<4, R>(block, ldw, tokens + j, k, dst + j * ldc, ldc);
    switch (num_tokens - j) {
      case 1: dot_block<1, R>(block, ldw, tokens + j, k, dst + j * ldc, ldc); break;
      case 2: dot_block<2, R>(block, ldw, tokens + j, k, dst + j * ldc, ldc); break;
      case 3: dot_block<3, R>(block, ldw, tokens + j, k, dst + j * ldc, ldc); break;
    }
  }
  if (r < row_end && R > 1) rows_dot_chunks<1>(w, ldw, r, row_end, tokens, num_tokens, k, c + (r - row_begin), ldc);
}

}  // namespace

void rows_dot_tokens(const float* w, int64_t ldw, int64_t row_begin, int64_t row_end,
                     const float* const* tokens, int num_tokens, int64_t k, float* c, int64_t ldc) {
  if (num_tokens < 1)
    throw std::invalid_argument("rows_dot_tokens: num_tokens must be >= 1, got " + std::to_string(num_tokens));
  rows_dot_chunks<4>(w, ldw, row_begin, row_end, tokens, num_tokens, k, c, ldc);
}

// exp(-g) by Cephes' expf scheme: g·log2(e) rounded with the 1.5·2^23 trick (no libm call, so the
// loop vectorises), two-constant range reduction, degree-6 polynomial, 2^n built in the exponent bits.
MOE_CLONES void silu_mul(const float* gate, const float* up, float* act, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    float g = gate[i];
    float x = -g;
    x = x > 88.f ? 88.f : x;
    x = x < -87.f ? -87.f : x;
    float t = x * 1.44269504088896341f + 12582912.f;
    float m = t - 12582912.f;
    float r = x - m * 0.693359375f;
    r = r + m * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.f;
    int32_t bits = (static_cast<int32_t>(m) + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, 4);
    float e = p * scale;  // exp(-g)
    act[i] = g / (1.f + e) * up[i];
  }
}

}  // namespace moe
