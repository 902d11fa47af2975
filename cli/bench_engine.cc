// The engine benchmark (see bench_engine.h): a seeded synthetic Mixtral-style layer routed by the real
// Router, run through the CPU backend; the same per-expert GEMMs run alone through OpenBLAS sgemm as the
// ceiling; memcpy bandwidth as the ceiling of decode (T = 1), which only streams weights.
#include "cli/bench_engine.h"

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <iomanip>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "runtime/model/model_spec.h"
#include "runtime/routing/router.h"

namespace moe {
namespace {

// Deterministic uniform floats in [-scale, scale) (splitmix64): the same seed gives the same layer.
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

  // The layer: router weights and experts from one seed.
  ModelSpec spec;
  spec.family = ModelFamily::Mixtral;
  spec.hidden_size = H;
  spec.moe_intermediate_size = I;
  spec.num_experts = E;
  spec.top_k = o.top_k;
  spec.num_hidden_layers = 1;
  spec.moe_layers = {0};
  SeededUniform rng(o.seed);
  RouterWeights router_weights;
  router_weights.gate = Matrix(E, H);
  rng.fill(router_weights.gate.data.data(), router_weights.gate.data.size(), 1.f / std::sqrt(static_cast<float>(H)));
  const Router router(spec, router_weights);

  auto backend = std::make_unique<CpuBackend>(CpuBackendOptions{.threads = o.threads});
  std::vector<SyntheticExpert> experts(static_cast<size_t>(E));
  for (int e = 0; e < E; ++e) {
    auto& w = experts[static_cast<size_t>(e)];
    w.gate_up.resize(static_cast<size_t>(2 * I * H));
    w.down.resize(static_cast<size_t>(H * I));
    rng.fill(w.gate_up.data(), w.gate_up.size(), 1.f / std::sqrt(static_cast<float>(H)));
    rng.fill(w.down.data(), w.down.size(), 1.f / std::sqrt(static_cast<float>(I)));
    ExpertWeightsView view{{DType::F32, w.gate_up.data(), I, H},
                           {DType::F32, w.gate_up.data() + I * H, I, H},
                           {DType::F32, w.down.data(), H, I}};
    backend->load_expert({0, e}, view);
  }

  // Machine ceiling for streaming: memcpy of a buffer much larger than cache.
  std::vector<char> src(static_cast<size_t>(o.memcpy_bytes), 1), dst(static_cast<size_t>(o.memcpy_bytes), 0);
  const double memcpy_gbs = static_cast<double>(o.memcpy_bytes) / median_seconds(o, [&] {
                              std::memcpy(dst.data(), src.data(), src.size());
                            }) / 1e9;
  src = {};
  dst = {};

  out << "moectl bench engine: one MoE layer through the CPU backend (" << backend->threads() << " threads)\n"
      << "  shape: hidden " << H << ", intermediate " << I << ", experts " << E << ", top_k " << o.top_k
      << ", f32 weights; routing: Router (mixtral softmax top-k); each figure the median of repeated runs\n"
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
    Matrix x(T, H);
    rng.fill(x.data.data(), x.data.size(), 1.f);
    const RoutingResult routing = router.route(x);
    std::vector<TokenAssignment> assignments;
    std::vector<int64_t> per_expert(static_cast<size_t>(E), 0);
    for (int64_t t = 0; t < T; ++t) {
      for (int k = 0; k < routing.top_k; ++k) {
        size_t idx = static_cast<size_t>(t * routing.top_k + k);
        assignments.push_back({static_cast<int32_t>(t), routing.topk_ids[idx], routing.topk_weights[idx]});
        ++per_expert[static_cast<size_t>(routing.topk_ids[idx])];
      }
    }
    std::vector<float> y(static_cast<size_t>(T * H));
    const double ours_s = median_seconds(o, [&] { backend->forward(0, x.data.data(), T, H, assignments, y.data()); });

    // Ceiling: the same GEMM shapes through sgemm alone, on preallocated buffers.
    const int64_t max_n = *std::max_element(per_expert.begin(), per_expert.end());
    std::vector<float> xs(static_cast<size_t>(max_n * H), 0.5f), gu(static_cast<size_t>(max_n * 2 * I)),
        act(static_cast<size_t>(max_n * I), 0.25f), ys(static_cast<size_t>(max_n * H));
    const double sgemm_s = median_seconds(o, [&] {
      for (int e = 0; e < E; ++e) {
        const int64_t n = per_expert[static_cast<size_t>(e)];
        if (n == 0) continue;
        const auto& w = experts[static_cast<size_t>(e)];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, 2 * I, H, 1.f, xs.data(), H, w.gate_up.data(), H, 0.f,
                    gu.data(), 2 * I);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, H, I, 1.f, act.data(), I, w.down.data(), I, 0.f,
                    ys.data(), H);
      }
    });

    const double flops = 6.0 * static_cast<double>(H) * static_cast<double>(I) * static_cast<double>(assignments.size());
    const int64_t touched = std::count_if(per_expert.begin(), per_expert.end(), [](int64_t n) { return n > 0; });
    const double weight_bytes = static_cast<double>(touched) * 3.0 * static_cast<double>(H * I) * sizeof(float);
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
