// The engine benchmark (see bench_engine.h): layer 0 of a seeded synthetic Mixtral-style model routed by its
// Router, run through the CPU backend; the same per-expert GEMMs run alone through OpenBLAS sgemm as the
// ceiling; memcpy bandwidth as the ceiling of decode (T = 1), which only streams weights.
#include "cli/bench_engine.h"

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <iomanip>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "runtime/model/model_spec.h"
#include "runtime/model/synthetic_model.h"
#include "runtime/routing/router.h"

namespace moe {
namespace {

// Deterministic uniform floats in [-scale, scale) (splitmix64), for the input tokens.
class SeededUniform {
 public:
  explicit SeededUniform(uint64_t seed) : state_(seed) {}
  void fill(float* dst, size_t n, float scale) {
    for (size_t i = 0; i < n; ++i) dst[i] = scale * (2.f * static_cast<float>(next() >> 40) / 16777216.f - 1.f);
  }

 private:
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  uint64_t state_;
};

// Median wall time of f() in seconds: one warm-up call, then repeats until min_seconds have passed
// and at least min_reps runs were made (at most max_reps).
template <class F>
double median_seconds(const BenchEngineOptions& o, F&& f) {
  using Clock = std::chrono::steady_clock;
  f();
  std::vector<double> times;
  const auto start = Clock::now();
  while (static_cast<int>(times.size()) < o.max_reps) {
    auto t0 = Clock::now();
    f();
    auto t1 = Clock::now();
    times.push_back(std::chrono::duration<double>(t1 - t0).count());
    double elapsed = std::chrono::duration<double>(t1 - start).count();
    if (static_cast<int>(times.size()) >= o.min_reps && elapsed >= o.min_seconds) break;
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

struct SyntheticExpert {
  std::vector<float> gate_up;  // [2I, H]: gate rows then up rows
  std::vector<float> down;     // [H, I]
};

// Different inputs cycled through for decode-sized batches (see run_bench_engine).
constexpr int kDecodeInputs = 8;

// One batch of random tokens, routed: the backend's assignments and the tokens per expert.
struct RoutedInput {
  Matrix x;
  std::vector<TokenAssignment> assignments;
  std::vector<int64_t> per_expert;
};

RoutedInput route_random_input(const Router& router, int64_t tokens, int experts, SeededUniform& rng) {
  RoutedInput in;
  in.x = Matrix(tokens, router.spec().hidden_size);
  rng.fill(in.x.data.data(), in.x.data.size(), 1.f);
  const RoutingResult routing = router.route(in.x);
  in.per_expert.assign(static_cast<size_t>(experts), 0);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int k = 0; k < routing.top_k; ++k) {
      const size_t idx = static_cast<size_t>(t * routing.top_k + k);
      in.assignments.push_back({static_cast<int32_t>(t), routing.topk_ids[idx], routing.topk_weights[idx]});
      ++in.per_expert[static_cast<size_t>(routing.topk_ids[idx])];
    }
  }
  return in;
}

// Peer figures of issue #2 (PyTorch CPU, HF-style expert loop, 2 cores) on the default shape, ms.
double peer_ms(const BenchEngineOptions& o, int64_t tokens) {
  if (o.hidden != 1024 || o.intermediate != 3584 || o.experts != 8 || o.top_k != 2) return -1;
  static const std::map<int64_t, double> peer{{1, 9.3}, {16, 55}, {128, 101}, {1024, 392}};
  auto it = peer.find(tokens);
  return it == peer.end() ? -1 : it->second;
}

std::string fixed_or_dash(double v, int precision) {  // negative: not measured
  if (v < 0) return "-";
  std::ostringstream s;
  s << std::fixed << std::setprecision(precision) << v;
  return s.str();
}

// Milliseconds with enough decimals to stay readable for tiny layers.
std::string millis(double seconds) { return fixed_or_dash(seconds * 1e3, seconds < 1e-3 ? 4 : 2); }

void validate(const BenchEngineOptions& o) {
  auto fail = [](const std::string& m) { throw std::invalid_argument("bench engine: " + m); };
  if (o.hidden <= 0 || o.intermediate <= 0)
    fail("hidden and intermediate must be > 0, got " + std::to_string(o.hidden) + " and " + std::to_string(o.intermediate));
  if (o.experts <= 0 || o.top_k <= 0 || o.top_k > o.experts)
    fail("need 1 <= top_k <= experts, got top_k " + std::to_string(o.top_k) + ", experts " + std::to_string(o.experts));
  if (o.tokens.empty()) fail("no token counts given");
  for (int64_t t : o.tokens)
    if (t <= 0) fail("token counts must be > 0, got " + std::to_string(t));
  if (o.min_reps < 1 || o.max_reps < o.min_reps)
    fail("need 1 <= min_reps <= max_reps, got " + std::to_string(o.min_reps) + ", " + std::to_string(o.max_reps));
  if (o.memcpy_bytes <= 0) fail("memcpy_bytes must be > 0, got " + std::to_string(o.memcpy_bytes));
}

}  // namespace

int run_bench_engine(const BenchEngineOptions& o, std::ostream& out) {
  validate(o);
  const int64_t H = o.hidden, I = o.intermediate;
  const int E = o.experts;

  // The layer: layer 0 of a seeded synthetic Mixtral-style model (f32 weights), routed by its Router.
  SyntheticModelOptions model;
  model.family = ModelFamily::Mixtral;
  model.hidden = H;
  model.intermediate = I;
  model.experts = E;
  model.top_k = o.top_k;
  model.layers = 1;
  model.dtype = DType::F32;
  model.seed = o.seed;
  const SyntheticLayerSource source(model);
  const Router router(source.spec(), source.router_weights(0));

  // Each expert into the backend, and kept here as f32 with gate and up stacked ([2I, H]) for the
  // sgemm ceiling, which then runs the very GEMMs the backend runs.
  auto backend = std::make_unique<CpuBackend>(CpuBackendOptions{.threads = o.threads});
  std::vector<SyntheticExpert> experts(static_cast<size_t>(E));
  for (int e = 0; e < E; ++e) {
    const ExpertWeights weights = source.expert_weights(0, e);
    backend->load_expert({0, e}, weights.view);
    auto& w = experts[static_cast<size_t>(e)];
    w.gate_up.resize(static_cast<size_t>(2 * I * H));
    w.down.resize(static_cast<size_t>(H * I));
    convert_to_f32(weights.view.gate.dtype, weights.view.gate.data, w.gate_up.data(), static_cast<size_t>(I * H));
    convert_to_f32(weights.view.up.dtype, weights.view.up.data, w.gate_up.data() + I * H, static_cast<size_t>(I * H));
    convert_to_f32(weights.view.down.dtype, weights.view.down.data, w.down.data(), static_cast<size_t>(H * I));
  }
  SeededUniform rng(o.seed);  // the input tokens

  // Machine ceiling for streaming: memcpy of a buffer much larger than cache.
  std::vector<char> src(static_cast<size_t>(o.memcpy_bytes), 1), dst(static_cast<size_t>(o.memcpy_bytes), 0);
  const double memcpy_gbs = static_cast<double>(o.memcpy_bytes) / median_seconds(o, [&] {
                              std::memcpy(dst.data(), src.data(), src.size());
                            }) / 1e9;
  src = {};
  dst = {};

  out << "moectl bench engine: one MoE layer through the CPU backend (" << backend->threads() << " threads)\n"
      << "  shape: hidden " << H << ", intermediate " << I << ", experts " << E << ", top_k " << o.top_k
      << ", f32 weights (synthetic model, seed " << o.seed
      << "); routing: Router (mixtral softmax top-k); each figure the median of repeated runs\n"
      << "  GFLOP/s counts 2*3*H*I per (token, expert) assignment; sgemm ceiling = OpenBLAS sgemm alone on\n"
      << "  the same per-expert GEMMs ([n_e,H]x[H,2I] and [n_e,I]x[I,H]); memcpy " << fixed_or_dash(memcpy_gbs, 1)
      << " GB/s (bytes copied / s, " << (o.memcpy_bytes >> 20) << " MiB buffer)\n\n";

  const std::vector<std::pair<std::string, int>> columns{
      {"T", 6},           {"ours ms", 10},      {"ours GFLOP/s", 14}, {"sgemm ms", 10},
      {"sgemm GFLOP/s", 15}, {"ours/sgemm", 12}, {"peer ms (PyTorch, issue #2)", 29},
      {"peer/ours", 11},  {"weights GB/s", 14}, {"memcpy GB/s", 13}};
  for (auto& [name, width] : columns) out << std::setw(width) << name;
  out << "\n";

  for (int64_t T : o.tokens) {
    // When T tokens cannot touch every expert (decode), successive runs use different inputs, so the
    // weights come from memory as in a real model (where the next call is another layer), not from a
    // cache still holding the previous run's experts.
    const int num_inputs = T * o.top_k < E ? kDecodeInputs : 1;
    std::vector<RoutedInput> inputs;
    for (int v = 0; v < num_inputs; ++v) inputs.push_back(route_random_input(router, T, E, rng));
    std::vector<float> y(static_cast<size_t>(T * H));
    size_t next = 0;
    const double ours_s = median_seconds(o, [&] {
      const RoutedInput& in = inputs[next++ % inputs.size()];
      backend->forward(0, in.x.data.data(), T, H, in.assignments, y.data());
    });

    // Ceiling: the same GEMM shapes through sgemm alone, on preallocated buffers.
    int64_t max_n = 0;
    for (const RoutedInput& in : inputs) max_n = std::max(max_n, *std::max_element(in.per_expert.begin(), in.per_expert.end()));
    std::vector<float> xs(static_cast<size_t>(max_n * H), 0.5f), gu(static_cast<size_t>(max_n * 2 * I)),
        act(static_cast<size_t>(max_n * I), 0.25f), ys(static_cast<size_t>(max_n * H));
    next = 0;
    const double sgemm_s = median_seconds(o, [&] {
      const RoutedInput& in = inputs[next++ % inputs.size()];
      for (int e = 0; e < E; ++e) {
        const int64_t n = in.per_expert[static_cast<size_t>(e)];
        if (n == 0) continue;
        const auto& w = experts[static_cast<size_t>(e)];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, 2 * I, H, 1.f, xs.data(), H, w.gate_up.data(), H, 0.f,
                    gu.data(), 2 * I);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, H, I, 1.f, act.data(), I, w.down.data(), I, 0.f,
                    ys.data(), H);
      }
    });

    const double flops = 6.0 * static_cast<double>(H) * static_cast<double>(I) * static_cast<double>(T * o.top_k);
    double touched = 0;  // experts with tokens, averaged over the inputs
    for (const RoutedInput& in : inputs)
      touched += static_cast<double>(std::count_if(in.per_expert.begin(), in.per_expert.end(), [](int64_t n) { return n > 0; }));
    touched /= static_cast<double>(inputs.size());
    const double weight_bytes = touched * 3.0 * static_cast<double>(H * I) * sizeof(float);
    const double peer = peer_ms(o, T);
    const std::vector<std::string> cells{std::to_string(T),
                                         millis(ours_s),
                                         fixed_or_dash(flops / ours_s / 1e9, 1),
                                         millis(sgemm_s),
                                         fixed_or_dash(flops / sgemm_s / 1e9, 1),
                                         fixed_or_dash(100.0 * sgemm_s / ours_s, 0) + "%",
                                         fixed_or_dash(peer, 1),
                                         peer < 0 ? "-" : fixed_or_dash(peer / (ours_s * 1e3), 2) + "x",
                                         T == 1 ? fixed_or_dash(weight_bytes / ours_s / 1e9, 1) : "-",
                                         T == 1 ? fixed_or_dash(memcpy_gbs, 1) : "-"};
    for (size_t c = 0; c < cells.size(); ++c) out << std::setw(columns[c].second) << cells[c];
    out << "\n";
  }
  return 0;
}

}  // namespace moe
