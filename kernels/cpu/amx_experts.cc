// AMX expert kernels (see amx_experts.h). Every function that touches tiles or AVX-512 carries its own
// target attribute, so the file builds without -march flags and the binary runs on any x86-64; callers
// reach these functions only after amx_available() said yes.
#include "kernels/cpu/amx_experts.h"

#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#include "kernels/cpu/streaming_kernels.h"

#define MOE_AMX __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512bf16")))
#define MOE_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

namespace moe {
namespace {

constexpr long kArchReqXcompPerm = 0x1023;  // arch_prctl: ask for an extended state component
constexpr long kXfeatureXtiledata = 18;

// Palette 1, all eight tiles 16 rows x 64 bytes.
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
  TileConfig() {
    for (int t = 0; t < 8; ++t) {
      colsb[t] = 64;
      rows[t] = 16;
    }
  }
};

// Tiles configured for the calling thread for the life of one kernel call (engine AMX only).
template <PackedEngine Engine>
class TileScope {
 public:
  MOE_AMX TileScope() {
    if constexpr (Engine == PackedEngine::Amx) {
      static const TileConfig config;
      _tile_loadconfig(&config);
    }
  }
  MOE_AMX ~TileScope() {
    if constexpr (Engine == PackedEngine::Amx) _tile_release();
  }
};

// The same products as tile_products (below) with AVX512_BF16 dot products, for CPUs without AMX: one
// weight row pair-vector (16 rows x 2 k) times the broadcast (x[k], x[k+1]) pair of 8 tokens at a time,
// 16 accumulators; x hi and lo (and the weights' lo plane) as in the tiles. Whole k range in one pass.
template <int Planes, int TB>
MOE_BF16 void vector_products(const uint16_t* ah, const uint16_t* al, int64_t a_block, const AmxMatrix& m0,
                              int64_t p0, const AmxMatrix& m1, int64_t p1, int64_t ks, float (*c)[2][256]) {
  for (int tb = 0; tb < TB; ++tb) {
    for (int half = 0; half < 2; ++half) {
      __m512 acc[8][2];
      for (int r = 0; r < 8; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
      for (int64_t s = 0; s < ks; ++s) {
        const uint16_t* w0 = m0.tile(0, p0, s);
        const uint16_t* w1 = m1.tile(0, p1, s);
        const uint16_t* xh = ah + tb * a_block + s * 512 + half * 8 * 32;
        const uint16_t* xl = al + tb * a_block + s * 512 + half * 8 * 32;
        for (int kk = 0; kk < 16; ++kk) {
          const __m512bh v0 = reinterpret_cast<__m512bh>(_mm512_load_si512(w0 + kk * 32));
          const __m512bh v1 = reinterpret_cast<__m512bh>(_mm512_load_si512(w1 + kk * 32));
          __m512bh l0, l1;
          if constexpr (Planes == 2) {
            l0 = reinterpret_cast<__m512bh>(_mm512_load_si512(m0.tile(1, p0, s) + kk * 32));
            l1 = reinterpret_cast<__m512bh>(_mm512_load_si512(m1.tile(1, p1, s) + kk * 32));
          }
          for (int r = 0; r < 8; ++r) {
            int32_t hbits, lbits;
            std::memcpy(&hbits, xh + r * 32 + 2 * kk, 4);
            std::memcpy(&lbits, xl + r * 32 + 2 * kk, 4);
            const __m512bh bh = reinterpret_cast<__m512bh>(_mm512_set1_epi32(hbits));
            const __m512bh bl = reinterpret_cast<__m512bh>(_mm512_set1_epi32(lbits));
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], v0, bh);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], v1, bh);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], v0, bl);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], v1, bl);
            if constexpr (Planes == 2) {
              acc[r][0] = _mm512_dpbf16_ps(acc[r][0], l0, bh);
              acc[r][1] = _mm512_dpbf16_ps(acc[r][1], l1, bh);
            }
          }
        }
      }
      for (int r = 0; r < 8; ++r)
        for (int j = 0; j < 2; ++j) _mm512_store_ps(c[tb][j] + (half * 8 + r) * 16, acc[r][j]);
    }
  }
}

// 16 floats -> bf16 hi (round to nearest even) and bf16 lo of the remainder.
MOE_AMX inline void split16(__m512 v, uint16_t* hi, uint16_t* lo) {
  __m256i h = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v));
  __m512 back = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  __m256i l = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_sub_ps(v, back)));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(hi), h);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(lo), l);
}

// c[tb][j] (tb < TB token blocks of 16 rows, j = 0, 1) = A[tb] · (panel p[j] of m[j])ᵀ over all k steps.
// A is blocked (hi, lo planes; a token block every `a_block` elements). Every product keeps four
// independent accumulator tiles in flight, so the tiles' latency hides behind their throughput:
//   TB = 2: tiles 0-3 = (tb, j), A of both blocks in 4-5, B in 6-7; hi and lo passes share the B tiles;
//   TB = 1: tiles 0-1 = j from A hi, 2-3 = j from A lo (and from the weights' lo plane), summed at the end.
// Cache blocking: the k steps run in chunks of kChunk, so the A tiles of a chunk (two token blocks, hi and
// lo: 16 KiB) stay in L1 while every panel of the task passes over them; between chunks each panel's four
// accumulator tiles wait in `carry` (4 KiB a panel). Without it A came from L2 once per panel and the
// tiles waited on it. (On the shared 2-core box, chunks of 4, 8, 16 and none measured within its noise,
// 340-530 GFLOP/s a core on bf16 weights; 4 keeps A in L1 on paper.)
constexpr int64_t kChunk = 4;

template <int Planes, int TB>
MOE_AMX inline void tile_products(const uint16_t* ah, const uint16_t* al, int64_t a_block, const AmxMatrix& m0,
                                  int64_t p0, const AmxMatrix& m1, int64_t p1, int64_t s0, int64_t s1, int64_t ks,
                                  float* carry, float (*c)[2][256]) {
  if (s0 == 0) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
  } else {
    _tile_loadd(0, carry, 64);
    _tile_loadd(1, carry + 256, 64);
    _tile_loadd(2, carry + 512, 64);
    _tile_loadd(3, carry + 768, 64);
  }
  for (int64_t s = s0; s < s1; ++s) {
    const int64_t a = s * 512;
    if (s + 1 < ks) {  // the next step's weight tiles into L1 while this step's products run
      const char* n0 = reinterpret_cast<const char*>(m0.tile(0, p0, s + 1));
      const char* n1 = reinterpret_cast<const char*>(m1.tile(0, p1, s + 1));
      for (int line = 0; line < 1024; line += 64) {
        _mm_prefetch(n0 + line, _MM_HINT_T0);
        _mm_prefetch(n1 + line, _MM_HINT_T0);
      }
    }
    _tile_loadd(6, m0.tile(0, p0, s), 64);
    _tile_loadd(7, m1.tile(0, p1, s), 64);
    if constexpr (TB == 2) {
      _tile_loadd(4, ah + a, 64);
      _tile_loadd(5, ah + a_block + a, 64);
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
      _tile_loadd(4, al + a, 64);
      _tile_loadd(5, al + a_block + a, 64);
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
      if constexpr (Planes == 2) {
        _tile_loadd(6, m0.tile(1, p0, s), 64);
        _tile_loadd(7, m1.tile(1, p1, s), 64);
        _tile_loadd(4, ah + a, 64);
        _tile_loadd(5, ah + a_block + a, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
    } else {
      _tile_loadd(4, ah + a, 64);
      _tile_loadd(5, al + a, 64);
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
      if constexpr (Planes == 2) {
        _tile_loadd(6, m0.tile(1, p0, s), 64);
        _tile_loadd(7, m1.tile(1, p1, s), 64);
        _tile_dpbf16ps(2, 4, 6);
        _tile_dpbf16ps(3, 4, 7);
      }
    }
  }
  if (s1 < ks) {
    _tile_stored(0, carry, 64);
    _tile_stored(1, carry + 256, 64);
    _tile_stored(2, carry + 512, 64);
    _tile_stored(3, carry + 768, 64);
    return;
  }
  if constexpr (TB == 2) {
    _tile_stored(0, c[0][0], 64);
    _tile_stored(1, c[0][1], 64);
    _tile_stored(2, c[1][0], 64);
    _tile_stored(3, c[1][1], 64);
  } else {
    alignas(64) float lo[2][256];
    _tile_stored(0, c[0][0], 64);
    _tile_stored(1, c[0][1], 64);
    _tile_stored(2, lo[0], 64);
    _tile_stored(3, lo[1], 64);
    for (int j = 0; j < 2; ++j)
      for (int i = 0; i < 256; i += 16)
        _mm512_store_ps(c[0][j] + i, _mm512_add_ps(_mm512_load_ps(c[0][j] + i), _mm512_load_ps(lo[j] + i)));
  }
}

// One token block in the paired schedule's order (the deterministic mode's lone last block): per k step
// C += A_hi·W, then C += A_lo·W (then C += A_hi·W_lo), into tiles 0 and 1 alone, as block 0 of
// tile_products<Planes, 2> sums them; so a token's bits do not depend on whether its block had a partner.
// Two accumulator chains instead of four: slower than the lone schedule, faster than pairing with zeros.
template <int Planes>
MOE_AMX inline void tile_products_paired_order(const uint16_t* ah, const uint16_t* al, const AmxMatrix& m0,
                                               int64_t p0, const AmxMatrix& m1, int64_t p1, int64_t s0, int64_t s1,
                                               int64_t ks, float* carry, float (*c)[2][256]) {
  if (s0 == 0) {
    _tile_zero(0);
    _tile_zero(1);
  } else {
    _tile_loadd(0, carry, 64);
    _tile_loadd(1, carry + 256, 64);
  }
  for (int64_t s = s0; s < s1; ++s) {
    const int64_t a = s * 512;
    if (s + 1 < ks) {
      const char* n0 = reinterpret_cast<const char*>(m0.tile(0, p0, s + 1));
      const char* n1 = reinterpret_cast<const char*>(m1.tile(0, p1, s + 1));
      for (int line = 0; line < 1024; line += 64) {
        _mm_prefetch(n0 + line, _MM_HINT_T0);
        _mm_prefetch(n1 + line, _MM_HINT_T0);
      }
    }
    _tile_loadd(6, m0.tile(0, p0, s), 64);
    _tile_loadd(7, m1.tile(0, p1, s), 64);
    _tile_loadd(4, ah + a, 64);
    _tile_loadd(5, al + a, 64);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(0, 5, 6);
    _tile_dpbf16ps(1, 5, 7);
    if constexpr (Planes == 2) {
      _tile_loadd(6, m0.tile(1, p0, s), 64);
      _tile_loadd(7, m1.tile(1, p1, s), 64);
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
    }
  }
  if (s1 < ks) {
    _tile_stored(0, carry, 64);
    _tile_stored(1, carry + 256, 64);
    return;
  }
  _tile_stored(0, c[0][0], 64);
  _tile_stored(1, c[0][1], 64);
}

template <PackedEngine Engine, int Planes>
MOE_AMX void gate_up_kernel(const AmxExpert& e, const AmxActivations& x, int64_t p0, int64_t p1, AmxActivations& act,
                            bool row_invariant) {
  TileScope<Engine> tiles;
  alignas(64) float c[2][2][256];
  alignas(64) float a[256];
  std::vector<float> carry_buffer(static_cast<size_t>(p1 - p0) * 1024 + 16);
  float* carries = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(carry_buffer.data()) + 63) & ~uintptr_t{63});
  const int64_t ks = x.ksteps;
  for (int64_t tb = 0; tb < x.token_blocks; tb += 2) {
    const int pair = x.token_blocks - tb >= 2 ? 2 : 1;
    const uint16_t* ah = x.hi + tb * ks * 512;
    const uint16_t* al = x.lo + tb * ks * 512;
    const int64_t chunk = Engine == PackedEngine::Amx ? kChunk : ks;
    for (int64_t s0 = 0; s0 < ks; s0 += chunk) {
    const int64_t s1 = std::min(ks, s0 + chunk);
    for (int64_t p = p0; p < p1; ++p) {
      float* carry = carries + (p - p0) * 1024;
      if constexpr (Engine == PackedEngine::Avx512Bf16) {
        if (pair == 2) {
          vector_products<Planes, 2>(ah, al, ks * 512, e.gate, p, e.up, p, ks, c);
        } else {
          vector_products<Planes, 1>(ah, al, ks * 512, e.gate, p, e.up, p, ks, c);
        }
      } else if (pair == 2) {
        tile_products<Planes, 2>(ah, al, ks * 512, e.gate, p, e.up, p, s0, s1, ks, carry, c);
      } else if (row_invariant) {
        tile_products_paired_order<Planes>(ah, al, e.gate, p, e.up, p, s0, s1, ks, carry, c);
      } else {
        tile_products<Planes, 1>(ah, al, ks * 512, e.gate, p, e.up, p, s0, s1, ks, carry, c);
      }
      if (s1 < ks) continue;
      for (int b = 0; b < pair; ++b) {
        silu_mul(c[b][0], c[b][1], a, 256);
        // Columns p*16.. of act: k step p/2, offset (p%2)*16 within each 32-wide row.
        const size_t base = static_cast<size_t>(((tb + b) * act.ksteps + p / 2) * 512 + (p % 2) * 16);
        for (int r = 0; r < 16; ++r)
          split16(_mm512_load_ps(a + r * 16), act.hi + base + r * 32, act.lo + base + r * 32);
      }
    }
    }
  }
}

template <PackedEngine Engine, int Planes>
MOE_AMX void down_kernel(const AmxExpert& e, const AmxActivations& act, int64_t n, int64_t pair0, int64_t pair1,
                         float* y, int64_t ldy, bool row_invariant) {
  TileScope<Engine> tiles;
  alignas(64) float c[2][2][256];
  std::vector<float> carry_buffer(static_cast<size_t>(pair1 - pair0) * 1024 + 16);
  float* carries = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(carry_buffer.data()) + 63) & ~uintptr_t{63});
  const int64_t ks = act.ksteps;
  const int64_t hidden = e.down.rows;
  for (int64_t tb = 0; tb < act.token_blocks; tb += 2) {
    const int blocks = act.token_blocks - tb >= 2 ? 2 : 1;
    const uint16_t* ah = act.hi + tb * ks * 512;
    const uint16_t* al = act.lo + tb * ks * 512;
    const int64_t chunk = Engine == PackedEngine::Amx ? kChunk : ks;
    for (int64_t s0 = 0; s0 < ks; s0 += chunk) {
    const int64_t s1 = std::min(ks, s0 + chunk);
    for (int64_t pair = pair0; pair < pair1; ++pair) {
      const int64_t p = 2 * pair;
      float* carry = carries + (pair - pair0) * 1024;
      if constexpr (Engine == PackedEngine::Avx512Bf16) {
        if (blocks == 2) {
          vector_products<Planes, 2>(ah, al, ks * 512, e.down, p, e.down, p + 1, ks, c);
        } else {
          vector_products<Planes, 1>(ah, al, ks * 512, e.down, p, e.down, p + 1, ks, c);
        }
      } else if (blocks == 2) {
        tile_products<Planes, 2>(ah, al, ks * 512, e.down, p, e.down, p + 1, s0, s1, ks, carry, c);
      } else if (row_invariant) {
        tile_products_paired_order<Planes>(ah, al, e.down, p, e.down, p + 1, s0, s1, ks, carry, c);
      } else {
        tile_products<Planes, 1>(ah, al, ks * 512, e.down, p, e.down, p + 1, s0, s1, ks, carry, c);
      }
      if (s1 < ks) continue;
      for (int b = 0; b < blocks; ++b) {
        const int rows = static_cast<int>(std::min<int64_t>(16, n - (tb + b) * 16));
        for (int half = 0; half < 2; ++half) {
          const int64_t h0 = (p + half) * 16;
          const int64_t cols = std::min<int64_t>(16, hidden - h0);
          if (cols <= 0) continue;
          for (int r = 0; r < rows; ++r)
            std::memcpy(y + ((tb + b) * 16 + r) * ldy + h0, c[b][half] + r * 16, static_cast<size_t>(cols) * sizeof(float));
        }
      }
    }
    }
  }
}

MOE_AMX void split_rows(const float* const* rows, int n, int64_t cols, AmxActivations& a) {
  for (int j = 0; j < n; ++j) {
    const float* src = rows[j];
    const size_t row_base = static_cast<size_t>((j / 16) * a.ksteps * 512 + (j % 16) * 32);
    for (int64_t k = 0; k < cols; k += 16) {
      const int64_t left = cols - k;
      const __mmask16 mask = left >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << left) - 1);
      const __m512 v = _mm512_maskz_loadu_ps(mask, src + k);
      const size_t at = row_base + static_cast<size_t>((k / 32) * 512 + k % 32);
      split16(v, a.hi + at, a.lo + at);
    }
  }
}

}  // namespace

// AMX-BF16 and AMX-TILE from CPUID leaf 7 (EDX bits 22 and 24): clang before 16 has no "amx-*" names
// for __builtin_cpu_supports, and the clang-built fuzz targets link this library.
static bool cpu_has_amx_bf16_tile() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  return (edx & (1u << 22)) != 0 && (edx & (1u << 24)) != 0;
}

bool amx_available() {
  static const bool ok = [] {
    if (!cpu_has_amx_bf16_tile() || !__builtin_cpu_supports("avx512bf16") || !__builtin_cpu_supports("avx512bw"))
      return false;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return ok;
}

bool avx512bf16_available() {
  return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl");
}

AlignedBf16::AlignedBf16(size_t n) : size_(n) {
  if (n == 0) return;
  const size_t bytes = (n * sizeof(uint16_t) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, bytes);
  if (!p) throw std::bad_alloc();
  std::memset(p, 0, bytes);
  data_.reset(static_cast<uint16_t*>(p));
}

AmxMatrix pack_amx_matrix(const WeightMatrixView& w, int planes) {
  if (w.data == nullptr || w.rows <= 0 || w.cols <= 0)
    throw std::invalid_argument("pack_amx_matrix: empty matrix [" + std::to_string(w.rows) + ", " +
                                std::to_string(w.cols) + "]");
  if (planes != 2 && !(planes == 1 && w.dtype == DType::BF16))
    throw std::invalid_argument(std::string("pack_amx_matrix: ") + std::to_string(planes) + " plane(s) for " +
                                dtype_name(w.dtype) + " weights; one plane needs BF16, else two");
  AmxMatrix m;
  m.rows = w.rows;
  m.cols = w.cols;
  m.panels = (w.rows + 31) / 32 * 2;
  m.ksteps = (w.cols + 31) / 32;
  m.planes = planes;
  m.data = AlignedBf16(static_cast<size_t>(m.planes * m.panels * m.ksteps) * 512);
  const size_t plane_size = static_cast<size_t>(m.panels * m.ksteps) * 512;
  std::vector<float> row(static_cast<size_t>(w.cols));
  const size_t row_bytes = static_cast<size_t>(w.cols) * dtype_size(w.dtype);
  for (int64_t r = 0; r < w.rows; ++r) {
    const void* src = static_cast<const char*>(w.data) + static_cast<size_t>(r) * row_bytes;
    const size_t panel_base = static_cast<size_t>((r / 16) * m.ksteps) * 512 + static_cast<size_t>(r % 16) * 2;
    if (m.planes == 1) {
      for (int64_t k = 0; k < w.cols; ++k)
        m.data.data()[panel_base + static_cast<size_t>((k / 32) * 512 + ((k % 32) / 2) * 32 + k % 2)] =
            load_unaligned<uint16_t>(src, static_cast<size_t>(k));
      continue;
    }
    convert_to_f32(w.dtype, src, row.data(), row.size());
    for (int64_t k = 0; k < w.cols; ++k) {
      const size_t at = panel_base + static_cast<size_t>((k / 32) * 512 + ((k % 32) / 2) * 32 + k % 2);
      const uint16_t hi = f32_to_bf16(row[static_cast<size_t>(k)]);
      m.data.data()[at] = hi;
      m.data.data()[plane_size + at] = f32_to_bf16(row[static_cast<size_t>(k)] - bf16_to_f32(hi));
    }
  }
  return m;
}

void amx_split_rows(const float* const* rows, int n, int64_t cols, AmxActivations& a) { split_rows(rows, n, cols, a); }

void amx_gate_up(PackedEngine engine, const AmxExpert& e, const AmxActivations& x, int64_t p0, int64_t p1,
                 AmxActivations& act, bool row_invariant) {
  const bool two = e.gate.planes == 2;
  if (engine == PackedEngine::Amx) {
    two ? gate_up_kernel<PackedEngine::Amx, 2>(e, x, p0, p1, act, row_invariant) : gate_up_kernel<PackedEngine::Amx, 1>(e, x, p0, p1, act, row_invariant);
  } else {
    two ? gate_up_kernel<PackedEngine::Avx512Bf16, 2>(e, x, p0, p1, act, row_invariant)
        : gate_up_kernel<PackedEngine::Avx512Bf16, 1>(e, x, p0, p1, act, row_invariant);
  }
}

void amx_down(PackedEngine engine, const AmxExpert& e, const AmxActivations& act, int64_t n, int64_t pair0,
              int64_t pair1, float* y, int64_t ldy, bool row_invariant) {
  const bool two = e.down.planes == 2;
  if (engine == PackedEngine::Amx) {
    two ? down_kernel<PackedEngine::Amx, 2>(e, act, n, pair0, pair1, y, ldy, row_invariant)
        : down_kernel<PackedEngine::Amx, 1>(e, act, n, pair0, pair1, y, ldy, row_invariant);
  } else {
    two ? down_kernel<PackedEngine::Avx512Bf16, 2>(e, act, n, pair0, pair1, y, ldy, row_invariant)
        : down_kernel<PackedEngine::Avx512Bf16, 1>(e, act, n, pair0, pair1, y, ldy, row_invariant);
  }
}

}  // namespace moe
