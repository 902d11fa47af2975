// CpuBackend: load/convert, and the grouped expert forward (see cpu_backend.h).
#include "kernels/cpu/cpu_backend.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/amx_forward.h"
#include "kernels/cpu/streaming_kernels.h"

namespace moe {
namespace cpu_detail {

// The tokens of one layer routed to one expert, and that expert's results for them.
struct ExpertGroup {
  int32_t expert = 0;
  std::shared_ptr<const CpuExpert> weights;
  std::vector<int32_t> tokens;
  std::vector<float> routing_weights;
  std::vector<int32_t> assignment;  // index of each token's assignment in the call (forward_rows)
  float* act = nullptr;  // [n, I]  silu(gate) * up, in the call's scratch
  float* y = nullptr;    // [n, H]  expert output, in the call's scratch
  int64_t n() const { return static_cast<int64_t>(tokens.size()); }
  // Factor on gate·x and up·x of token j (the routing weight when it scales the input), and on its output.
  float input_scale(int64_t j) const { return weights->math.weight_scales_input ? routing_weights[j] : 1.f; }
  float output_scale(int64_t j) const { return weights->math.weight_scales_input ? 1.f : routing_weights[j]; }
};

}  // namespace cpu_detail

namespace {

using cpu_detail::ExpertGroup;

constexpr int64_t kRowBlock = 64;  // weight rows per streaming task
// Most tokens of one streaming call: the default mode's groups (at most kMaxStreamingTokens) and the
// deterministic mode's pieces. Bigger pieces read each 64-row weight block from memory once for more
// tokens (the others from L2): 256 keeps prefill near sgemm's memory traffic; the per-task stack buffers
// (2 x 64 KiB) are sized by it.
constexpr int kStreamingPieceTokens = 256;

std::string expert_name(ExpertKey key) {
  return "(layer " + std::to_string(key.layer) + ", expert " + std::to_string(key.expert) + ")";
}

std::string shape(int64_t rows, int64_t cols) {
  return "[" + std::to_string(rows) + ", " + std::to_string(cols) + "]";
}

void check_view(ExpertKey key, const char* what, const WeightMatrixView& v) {
  std::string where = "CpuBackend::load_expert" + expert_name(key) + ": " + what;
  if (v.data == nullptr) throw std::invalid_argument(where + " has no data");
  if (v.rows <= 0 || v.cols <= 0) throw std::invalid_argument(where + " has empty shape " + shape(v.rows, v.cols));
  if (v.dtype != DType::F32 && v.dtype != DType::BF16 && v.dtype != DType::F16)
    throw std::invalid_argument(where + " has unknown dtype " + std::to_string(static_cast<int>(v.dtype)));
}

int resolve_threads(int threads) {
  if (threads > 0) {
    openblas_set_num_threads(threads);
    return threads;
  }
  return std::max(1, openblas_get_num_threads());
}

// act[0:n) from the raw products gate·x, up·x of rows [i0, i0 + n) of one token: scale (linear, so
// gate·(s·x) = s·(gate·x)), add the biases, apply the expert's activation. gate/up are overwritten.
void activate(const CpuExpert& e, float* gate, float* up, float* act, int64_t i0, int64_t n, float scale) {
  if (scale != 1.f)
    for (int64_t i = 0; i < n; ++i) gate[i] *= scale, up[i] *= scale;
  if (!e.gate_up_bias.empty()) {
    const float* bg = e.gate_up_bias.data() + i0;
    const float* bu = e.gate_up_bias.data() + e.intermediate + i0;
    for (int64_t i = 0; i < n; ++i) gate[i] += bg[i], up[i] += bu[i];
  }
  if (e.math.activation == ExpertActivation::SiluGlu) {
    silu_mul(gate, up, act, n);
    return;
  }
  const float limit = e.math.swiglu_limit, alpha = e.math.swiglu_alpha;
  for (int64_t i = 0; i < n; ++i) {
    const float g = std::min(gate[i], limit);
    const float u = std::clamp(up[i], -limit, limit);
    act[i] = (u + 1.f) * (g / (1.f + std::exp(-alpha * g)));
  }
}

// Streaming path, gate+up pass: task `block` of group g computes rows [i0, i1) of gate and of up for
// all of the group's tokens and writes silu(gate)·up into act[:, i0:i1].
void gate_up_block(ExpertGroup& g, const float* x, int64_t hidden, int64_t i0) {
  const CpuExpert& e = *g.weights;
  const int64_t inter = e.intermediate;
  const int64_t i1 = std::min(i0 + kRowBlock, inter);
  const int n = static_cast<int>(g.n());
  const float* rows[kStreamingPieceTokens] = {};
  for (int j = 0; j < n; ++j) rows[j] = x + static_cast<int64_t>(g.tokens[j]) * hidden;
  float gate[kStreamingPieceTokens * kRowBlock];
  float up[kStreamingPieceTokens * kRowBlock];
  rows_dot_tokens(e.gate_up.data(), hidden, i0, i1, rows, n, hidden, gate, kRowBlock);
  rows_dot_tokens(e.gate_up.data(), hidden, inter + i0, inter + i1, rows, n, hidden, up, kRowBlock);
  for (int j = 0; j < n; ++j)
    activate(e, gate + j * kRowBlock, up + j * kRowBlock, g.act + j * inter + i0, i0, i1 - i0, g.input_scale(j));
}

// Streaming path, down pass: rows [h0, h1) of the down projection for all of the group's tokens.
void down_block(ExpertGroup& g, int64_t h0) {
  const CpuExpert& e = *g.weights;
  const int64_t inter = e.intermediate;
  const int64_t hidden = e.hidden;
  const int64_t h1 = std::min(h0 + kRowBlock, hidden);
  const int n = static_cast<int>(g.n());
  const float* rows[kStreamingPieceTokens] = {};
  for (int j = 0; j < n; ++j) rows[j] = g.act + j * inter;
  rows_dot_tokens(e.down.data(), inter, h0, h1, rows, n, inter, g.y + h0, hidden);
}

// Floats of scratch the GEMM path needs for a group: the gathered rows and the gate/up product.
int64_t gemm_scratch_floats(const ExpertGroup& g, int64_t hidden) {
  return g.n() * (hidden + 2 * g.weights->intermediate);
}

// GEMM path: gather, sgemm gate+up, SwiGLU, sgemm down. `scratch` holds gemm_scratch_floats.
void gemm_group(ExpertGroup& g, const float* x, int64_t hidden, float* scratch) {
  const CpuExpert& e = *g.weights;
  const int64_t inter = e.intermediate;
  const int64_t n = g.n();
  float* xs = scratch;               // [n, H]
  float* gu = scratch + n * hidden;  // [n, 2I]
  for (int64_t j = 0; j < n; ++j)
    std::memcpy(xs + j * hidden, x + static_cast<int64_t>(g.tokens[j]) * hidden, hidden * sizeof(float));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, 2 * inter, hidden, 1.f, xs, hidden,
              e.gate_up.data(), hidden, 0.f, gu, 2 * inter);
  for (int64_t j = 0; j < n; ++j)
    activate(e, gu + j * 2 * inter, gu + j * 2 * inter + inter, g.act + j * inter, 0, inter, g.input_scale(j));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, hidden, inter, 1.f, g.act, inter,
              e.down.data(), inter, 0.f, g.y, hidden);
}

// Scratch of the calling thread, grown on demand and reused by its later calls: fresh buffers per
// call would cost a page fault per 4 KiB touched, a visible share of a large batch's time. Holds the
// largest call's scratch for the life of the thread.
float* thread_scratch(size_t floats) {
  thread_local AlignedFloats buffer;
  if (buffer.size() < floats) buffer = AlignedFloats(floats);
  return buffer.data();
}

CpuKernel resolve_kernel(CpuKernel requested) {
  if (requested == CpuKernel::Auto) {
    const char* env = std::getenv("MOE_CPU_KERNEL");
    if (env != nullptr && *env != '\0') requested = parse_cpu_kernel(env);
  }
  // Auto never picks avx512bf16: on the one CPU it was measured on (a shared 2-core Xeon with AMX) it ran
  // at about 1/3 of blas per CPU-second; it stays opt-in until measured where it is meant for (Zen 4/5).
  if (requested == CpuKernel::Auto) return amx_available() ? CpuKernel::Amx : CpuKernel::Blas;
  if (requested == CpuKernel::Amx && !amx_available())
    throw std::invalid_argument("CpuBackend: kernel amx asked for, but this CPU (or its kernel) offers no AMX-BF16");
  if (requested == CpuKernel::Avx512Bf16 && !avx512bf16_available())
    throw std::invalid_argument("CpuBackend: kernel avx512bf16 asked for, but this CPU has no AVX512_BF16");
  return requested;
}

// Adds each group's outputs, weighted, into out (zeroed first) in ascending expert order:
// deterministic and free of races. x is no longer read, so out may be the same buffer as x.
void combine(const std::map<int32_t, ExpertGroup>& by_expert, int64_t num_tokens, int64_t hidden, float* out) {
  std::memset(out, 0, static_cast<size_t>(num_tokens * hidden) * sizeof(float));
  for (const auto& [id, g] : by_expert) {
    const float* bias = g.weights->down_bias.empty() ? nullptr : g.weights->down_bias.data();
    for (int64_t j = 0; j < g.n(); ++j) {
      float w = g.output_scale(j);
      float* dst = out + static_cast<int64_t>(g.tokens[j]) * hidden;
      const float* src = g.y + j * hidden;
      if (bias)
        for (int64_t h = 0; h < hidden; ++h) dst[h] += w * (src[h] + bias[h]);
      else
        for (int64_t h = 0; h < hidden; ++h) dst[h] += w * src[h];
    }
  }
}

// rows[g.assignment[j]] = output_scale · (y + down bias) for every token j of every group: each
// assignment's weighted output on its own row (forward_rows).
void write_rows(const std::vector<ExpertGroup>& groups, int64_t hidden, float* rows) {
  for (const ExpertGroup& g : groups) {
    const float* bias = g.weights->down_bias.empty() ? nullptr : g.weights->down_bias.data();
    for (int64_t j = 0; j < g.n(); ++j) {
      const float w = g.output_scale(j);
      float* dst = rows + static_cast<int64_t>(g.assignment[j]) * hidden;
      const float* src = g.y + j * hidden;
      if (bias)
        for (int64_t h = 0; h < hidden; ++h) dst[h] = w * (src[h] + bias[h]);
      else
        for (int64_t h = 0; h < hidden; ++h) dst[h] = w * src[h];
    }
  }
}

// Deterministic mode: the groups of the streaming path cut into pieces of at most kStreamingPieceTokens
// tokens (its per-task buffers hold that many), so every group, whatever its size, runs through the
// streaming kernels, whose per-token result does not depend on how many tokens share the call (each
// token has its own accumulators; k runs in one order; the sgemm the default mode switches to above 48
// tokens would not do: its kernels, blocking and threads depend on the row count).
std::vector<ExpertGroup> split_for_streaming(std::map<int32_t, ExpertGroup>& by_expert) {
  std::vector<ExpertGroup> pieces;
  for (auto& [id, g] : by_expert) {
    if (g.weights->packed() || g.n() <= kStreamingPieceTokens) {
      pieces.push_back(std::move(g));
      continue;
    }
    for (int64_t j0 = 0; j0 < g.n(); j0 += kStreamingPieceTokens) {
      const int64_t j1 = std::min<int64_t>(g.n(), j0 + kStreamingPieceTokens);
      ExpertGroup piece;
      piece.expert = g.expert;
      piece.weights = g.weights;
      piece.tokens.assign(g.tokens.begin() + j0, g.tokens.begin() + j1);
      piece.routing_weights.assign(g.routing_weights.begin() + j0, g.routing_weights.begin() + j1);
      piece.assignment.assign(g.assignment.begin() + j0, g.assignment.begin() + j1);
      pieces.push_back(std::move(piece));
    }
  }
  return pieces;
}

// Kernels amx and avx512bf16: the packed groups through amx_forward, into their g.y.
void run_packed(PackedEngine engine, ThreadPool& pool, const std::vector<ExpertGroup*>& groups, const float* x,
                int64_t hidden, bool row_invariant) {
  std::vector<AmxGroupWork> work;
  work.reserve(groups.size());
  for (ExpertGroup* g : groups) {
    AmxGroupWork w;
    w.expert = &g->weights->amx;
    for (int32_t t : g->tokens) w.rows.push_back(x + static_cast<int64_t>(t) * hidden);
    w.y = g->y;
    work.push_back(std::move(w));
  }
  amx_forward(engine, pool, work, hidden, row_invariant);
}

}  // namespace

CpuKernel parse_cpu_kernel(const std::string& name) {
  if (name == "auto") return CpuKernel::Auto;
  if (name == "amx") return CpuKernel::Amx;
  if (name == "avx512bf16") return CpuKernel::Avx512Bf16;
  if (name == "blas") return CpuKernel::Blas;
  throw std::invalid_argument("unknown CPU kernel '" + name + "': expected auto, amx, avx512bf16 or blas");
}

const char* cpu_kernel_name(CpuKernel kernel) {
  switch (kernel) {
    case CpuKernel::Auto: return "auto";
    case CpuKernel::Amx: return "amx";
    case CpuKernel::Avx512Bf16: return "avx512bf16";
    case CpuKernel::Blas: return "blas";
  }
  return "?";
}

CpuBackend::CpuBackend(const CpuBackendOptions& options)
    : options_(options), kernel_(resolve_kernel(options.kernel)), pool_(resolve_threads(options.threads)) {
  options_.max_streaming_tokens = std::clamp(options_.max_streaming_tokens, 0, kMaxStreamingTokens);
}

void CpuBackend::load_expert(ExpertKey key, const ExpertWeightsView& w) {
  check_view(key, "gate", w.gate);
  check_view(key, "up", w.up);
  check_view(key, "down", w.down);
  const int64_t inter = w.gate.rows;
  const int64_t hidden = w.gate.cols;
  std::string where = "CpuBackend::load_expert" + expert_name(key) + ": ";
  if (w.up.rows != inter || w.up.cols != hidden)
    throw std::invalid_argument(where + "up is " + shape(w.up.rows, w.up.cols) + ", expected " + shape(inter, hidden) +
                                " like gate");
  if (w.down.rows != hidden || w.down.cols != inter)
    throw std::invalid_argument(where + "down is " + shape(w.down.rows, w.down.cols) + ", expected [hidden, intermediate] = " +
                                shape(hidden, inter));
  auto e = std::make_shared<CpuExpert>();
  e->hidden = hidden;
  e->intermediate = inter;
  if ((kernel_ == CpuKernel::Amx || kernel_ == CpuKernel::Avx512Bf16) && w.math.is_default() && !w.has_biases()) {
    // bf16 weights stay bf16 (one plane); any other dtype becomes two bf16 planes (hi + lo). Experts with
    // biases or another activation keep the f32 layout below and run on the blas path.
    const bool bf16 = w.gate.dtype == DType::BF16 && w.up.dtype == DType::BF16 && w.down.dtype == DType::BF16;
    const int planes = bf16 ? 1 : 2;
    e->amx.gate = pack_amx_matrix(w.gate, planes);
    e->amx.up = pack_amx_matrix(w.up, planes);
    e->amx.down = pack_amx_matrix(w.down, planes);
    std::unique_lock lock(mutex_);
    auto& slot = experts_[key];
    if (slot) resident_bytes_ -= slot->bytes();
    resident_bytes_ += e->bytes();
    slot = std::move(e);
    return;
  }
  e->gate_up = AlignedFloats(static_cast<size_t>(2 * inter * hidden));
  e->down = AlignedFloats(static_cast<size_t>(hidden * inter));
  const size_t block = static_cast<size_t>(inter * hidden);
  convert_to_f32(w.gate.dtype, w.gate.data, e->gate_up.data(), block);
  convert_to_f32(w.up.dtype, w.up.data, e->gate_up.data() + block, block);
  convert_to_f32(w.down.dtype, w.down.data, e->down.data(), block);
  e->math = w.math;
  if (w.has_biases()) {
    auto check_bias = [&](const char* what, const WeightVectorView& b, int64_t size) {
      if (b.data == nullptr || b.size != size)
        throw std::invalid_argument(where + what + " bias has " + std::to_string(b.data ? b.size : 0) +
                                    " values, expected " + std::to_string(size) + " (all three biases or none)");
    };
    check_bias("gate", w.gate_bias, inter);
    check_bias("up", w.up_bias, inter);
    check_bias("down", w.down_bias, hidden);
    e->gate_up_bias.resize(static_cast<size_t>(2 * inter));
    e->down_bias.resize(static_cast<size_t>(hidden));
    convert_to_f32(w.gate_bias.dtype, w.gate_bias.data, e->gate_up_bias.data(), static_cast<size_t>(inter));
    convert_to_f32(w.up_bias.dtype, w.up_bias.data, e->gate_up_bias.data() + inter, static_cast<size_t>(inter));
    convert_to_f32(w.down_bias.dtype, w.down_bias.data, e->down_bias.data(), static_cast<size_t>(hidden));
  }

  std::unique_lock lock(mutex_);
  auto& slot = experts_[key];
  if (slot) resident_bytes_ -= slot->bytes();
  resident_bytes_ += e->bytes();
  slot = std::move(e);
}

void CpuBackend::unload_expert(ExpertKey key) {
  std::unique_lock lock(mutex_);
  auto it = experts_.find(key);
  if (it == experts_.end()) return;
  resident_bytes_ -= it->second->bytes();
  experts_.erase(it);  // a forward still running on it keeps its own reference
}

bool CpuBackend::has_expert(ExpertKey key) const {
  std::shared_lock lock(mutex_);
  return experts_.count(key) != 0;
}

size_t CpuBackend::resident_bytes() const {
  std::shared_lock lock(mutex_);
  return resident_bytes_;
}

std::shared_ptr<const CpuExpert> CpuBackend::find(ExpertKey key) const {
  std::shared_lock lock(mutex_);
  auto it = experts_.find(key);
  return it == experts_.end() ? nullptr : it->second;
}

// Groups the assignments by expert (ascending id; tokens in assignment order), checking everything
// first; a group per expert.
std::map<int32_t, cpu_detail::ExpertGroup> CpuBackend::group(int32_t layer, const float* x, int64_t num_tokens, int64_t hidden,
                                                 std::span<const TokenAssignment> assignments, float* out,
                                                 const char* method) const {
  const std::string where = std::string("CpuBackend::") + method + "(layer " + std::to_string(layer) + "): ";
  if (num_tokens < 0) throw std::invalid_argument(where + "num_tokens is negative: " + std::to_string(num_tokens));
  if (hidden <= 0) throw std::invalid_argument(where + "hidden must be positive, got " + std::to_string(hidden));
  if (num_tokens > 0 && (x == nullptr || out == nullptr))
    throw std::invalid_argument(where + "x and out must not be null for " + std::to_string(num_tokens) + " tokens");

  std::map<int32_t, ExpertGroup> by_expert;
  for (size_t a = 0; a < assignments.size(); ++a) {
    const TokenAssignment& t = assignments[a];
    if (t.token < 0 || t.token >= num_tokens)
      throw std::invalid_argument(where + "assignment " + std::to_string(a) + " names token " + std::to_string(t.token) +
                                  ", out of range [0, " + std::to_string(num_tokens) + ")");
    auto [it, inserted] = by_expert.try_emplace(t.expert);
    ExpertGroup& g = it->second;
    if (inserted) {
      g.expert = t.expert;
      g.weights = find(ExpertKey{layer, t.expert});
      if (!g.weights) throw std::invalid_argument(where + "expert " + expert_name(ExpertKey{layer, t.expert}) + " is not loaded");
      if (g.weights->hidden != hidden)
        throw std::invalid_argument(where + "expert " + std::to_string(t.expert) + " has hidden size " +
                                    std::to_string(g.weights->hidden) + ", got hidden " + std::to_string(hidden));
    }
    g.tokens.push_back(t.token);
    g.routing_weights.push_back(t.weight);
    g.assignment.push_back(static_cast<int32_t>(a));
  }
  return by_expert;
}

// Runs every group's expert into its g.y (and g.act), in the calling thread's scratch. row_invariant:
// the deterministic mode's kernels (streaming for every non-packed group, paired AMX token blocks).
void CpuBackend::compute(std::span<cpu_detail::ExpertGroup* const> groups, const float* x, int64_t hidden, bool row_invariant) {
  std::vector<ExpertGroup*> streaming, gemm, packed;
  int64_t results_floats = 0, gemm_floats = 0;
  for (ExpertGroup* gp : groups) {
    ExpertGroup& g = *gp;
    if (g.weights->packed()) {
      packed.push_back(&g);
      results_floats += g.n() * hidden;
      continue;
    }
    results_floats += g.n() * (g.weights->intermediate + hidden);
    if (row_invariant || g.n() <= options_.max_streaming_tokens) {
      streaming.push_back(&g);
    } else {
      gemm.push_back(&g);
      gemm_floats = std::max(gemm_floats, gemm_scratch_floats(g, hidden));
    }
  }
  float* scratch = thread_scratch(static_cast<size_t>(results_floats + gemm_floats));
  for (ExpertGroup* gp : groups) {
    ExpertGroup& g = *gp;
    g.act = g.weights->packed() ? nullptr : scratch;
    g.y = g.weights->packed() ? scratch : scratch + g.n() * g.weights->intermediate;
    scratch = g.y + g.n() * hidden;
  }
  if (!packed.empty())
    run_packed(kernel_ == CpuKernel::Amx ? PackedEngine::Amx : PackedEngine::Avx512Bf16, pool_, packed, x, hidden,
               row_invariant);

  if (!streaming.empty()) {
    // Tasks are (group, row block) over all streaming groups, so two experts of one decode token
    // keep both cores busy as well as one expert does.
    auto run_blocks = [&](auto rows_of, auto body) {
      std::vector<int64_t> first_task(streaming.size() + 1, 0);
      for (size_t s = 0; s < streaming.size(); ++s)
        first_task[s + 1] = first_task[s] + (rows_of(*streaming[s]) + kRowBlock - 1) / kRowBlock;
      pool_.parallel_for(first_task.back(), [&](int64_t task) {
        size_t s = std::upper_bound(first_task.begin(), first_task.end(), task) - first_task.begin() - 1;
        body(*streaming[s], (task - first_task[s]) * kRowBlock);
      });
    };
    run_blocks([](const ExpertGroup& g) { return g.weights->intermediate; },
               [&](ExpertGroup& g, int64_t i0) { gate_up_block(g, x, hidden, i0); });
    run_blocks([&](const ExpertGroup&) { return hidden; }, [](ExpertGroup& g, int64_t h0) { down_block(g, h0); });
  }
  for (ExpertGroup* g : gemm) gemm_group(*g, x, hidden, scratch);
}

void CpuBackend::forward(int32_t layer, const float* x, int64_t num_tokens, int64_t hidden,
                         std::span<const TokenAssignment> assignments, float* out) {
  std::map<int32_t, ExpertGroup> by_expert = group(layer, x, num_tokens, hidden, assignments, out, "forward");
  if (by_expert.empty()) {
    if (num_tokens > 0) std::memset(out, 0, static_cast<size_t>(num_tokens * hidden) * sizeof(float));
    return;
  }
  std::vector<ExpertGroup*> groups;
  for (auto& [id, g] : by_expert) groups.push_back(&g);
  compute(groups, x, hidden, false);
  combine(by_expert, num_tokens, hidden, out);
}

void CpuBackend::forward_rows(int32_t layer, const float* x, int64_t num_tokens, int64_t hidden,
                              std::span<const TokenAssignment> assignments, float* rows) {
  std::map<int32_t, ExpertGroup> by_expert = group(layer, x, num_tokens, hidden, assignments, rows, "forward_rows");
  if (by_expert.empty()) return;
  std::vector<ExpertGroup> pieces = split_for_streaming(by_expert);
  std::vector<ExpertGroup*> groups;
  for (ExpertGroup& g : pieces) groups.push_back(&g);
  compute(groups, x, hidden, true);
  write_rows(pieces, hidden, rows);
}

std::unique_ptr<ExpertBackend> make_cpu_backend(int threads) {
  CpuBackendOptions options;
  options.threads = threads;
  return std::make_unique<CpuBackend>(options);
}

}  // namespace moe
