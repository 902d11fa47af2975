// The engine benchmark (see bench_engine.h): layer 0 of a seeded synthetic Mixtral-style model (f32 or
// bf16 weights) routed by its Router, run through the CPU backend; the PyTorch peer on the same weights
// and inputs, alternated with ours; kernel blas on the f32 weights (today's path); memcpy bandwidth as the
// ceiling of decode (T = 1), which only streams weights.
#include "cli/bench_engine.h"

#include <functional>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <chrono>
#include <cstring>
#include <iomanip>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli/bench_torch_peer.h"
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


double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Different inputs cycled through for decode-sized batches (see run_bench_engine).
constexpr int kDecodeInputs = 8;

// One batch of random tokens, routed: the backend's assignments and the tokens per expert.
struct RoutedInput {
  Matrix x;
  std::vector<TokenAssignment> assignments;
  std::vector<int64_t> per_expert;
  PeerInput peer;  // the same routing as the peer takes it
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
      in.peer.ids.push_back(routing.topk_ids[idx]);
      in.peer.weights.push_back(routing.topk_weights[idx]);
      ++in.per_expert[static_cast<size_t>(routing.topk_ids[idx])];
    }
  }
  in.peer.x = in.x.data.data();
  return in;
}

std::string fixed_or_dash(double v, int precision) {  // negative or NaN: not measured
  if (!(v >= 0)) return "-";
  std::ostringstream s;
  s << std::fixed << std::setprecision(precision) << v;
  return s.str();
}

// Milliseconds with enough decimals to stay readable for tiny layers.
std::string millis(double seconds) { return fixed_or_dash(seconds * 1e3, seconds < 1e-3 ? 4 : 2); }

// A rate (GFLOP/s, GB/s): one decimal, or three significant digits below 1 so that a slow build
// (sanitizers, a loaded machine) does not print a measured rate as 0.0.
std::string rate(double v) {
  if (!(v >= 0) || v >= 1) return fixed_or_dash(v, 1);
  std::ostringstream s;
  s << std::setprecision(3) << v;
  return s.str();
}

std::string sci(double v) {
  if (!(v >= 0)) return "-";
  std::ostringstream s;
  s << std::scientific << std::setprecision(1) << v;
  return s.str();
}

void validate(const BenchEngineOptions& o) {
  auto fail = [](const std::string& m) { throw std::invalid_argument("bench engine: " + m); };
  if (o.hidden <= 0 || o.intermediate <= 0)
    fail("hidden and intermediate must be > 0, got " + std::to_string(o.hidden) + " and " + std::to_string(o.intermediate));
  if (o.experts <= 0 || o.top_k <= 0 || o.top_k > o.experts)
    fail("need 1 <= top_k <= experts, got top_k " + std::to_string(o.top_k) + ", experts " + std::to_string(o.experts));
  if (o.tokens.empty()) fail("no token counts given");
  for (int64_t t : o.tokens)
    if (t <= 0) fail("token counts must be > 0, got " + std::to_string(t));
  if (o.dtypes.empty()) fail("no weight dtypes given");
  for (DType d : o.dtypes)
    if (d != DType::F32 && d != DType::BF16) fail(std::string("weight dtype must be f32 or bf16, got ") + dtype_name(d));
  if (o.min_reps < 1 || o.max_reps < o.min_reps)
    fail("need 1 <= min_reps <= max_reps, got " + std::to_string(o.min_reps) + ", " + std::to_string(o.max_reps));
  if (o.pairs < 1) fail("pairs must be >= 1, got " + std::to_string(o.pairs));
  if (o.memcpy_bytes <= 0) fail("memcpy_bytes must be > 0, got " + std::to_string(o.memcpy_bytes));
}

std::string load_average() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  if (!(f >> a >> b >> c)) return "unknown";
  return a + " " + b + " " + c;
}

// A scratch folder for the files handed to the peer, removed with everything in it.
class ScratchDir {
 public:
  ScratchDir() {
    path_ = std::filesystem::temp_directory_path() / ("moectl-bench-engine-" + std::to_string(::getpid()));
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// The layer of one weight dtype: its model, router and the weights in the backend(s).
struct Layer {
  std::unique_ptr<SyntheticLayerSource> source;
  std::unique_ptr<Router> router;
};

Layer make_layer(const BenchEngineOptions& o, DType dtype) {
  Layer l;
  l.source = std::make_unique<SyntheticLayerSource>(bench_engine_model(o, dtype));
  l.router = std::make_unique<Router>(l.source->spec(), l.source->router_weights(0));
  return l;
}

void write_weights(const Layer& l, const BenchEngineOptions& o, const std::string& path) {
  std::ofstream f(path, std::ios::binary);
  for (int e = 0; e < o.experts; ++e) {
    const ExpertWeights w = l.source->expert_weights(0, e);
    for (const WeightMatrixView* m : {&w.view.gate, &w.view.up, &w.view.down})
      f.write(static_cast<const char*>(m->data), static_cast<std::streamsize>(m->rows * m->cols * dtype_size(m->dtype)));
  }
  if (!f) throw std::runtime_error("cannot write the peer's weights to " + path);
}

std::string default_path(const std::string& given, const char* relative) {
  if (!given.empty()) return given;
  return (std::filesystem::path(MOE_SOURCE_DIR) / relative).string();
}

std::string met(bool ok) { return ok ? "met" : "MISSED"; }

}  // namespace

double median_ratio(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.empty() || a.size() != b.size())
    throw std::invalid_argument("median_ratio: need two equal, non-empty lists, got " + std::to_string(a.size()) + " and " +
                                std::to_string(b.size()));
  std::vector<double> r;
  for (size_t i = 0; i < a.size(); ++i) r.push_back(a[i] / b[i]);
  return median_of(r);
}

double median_seconds(const BenchEngineOptions& o, const std::function<void()>& f) {
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

SyntheticModelOptions bench_engine_model(const BenchEngineOptions& o, DType dtype) {
  SyntheticModelOptions model;
  model.family = ModelFamily::Mixtral;
  model.hidden = o.hidden;
  model.intermediate = o.intermediate;
  model.experts = o.experts;
  model.top_k = o.top_k;
  model.layers = 1;
  model.dtype = dtype;
  model.seed = o.seed;
  return model;
}

int run_bench_engine(const BenchEngineOptions& o, std::ostream& out) {
  validate(o);
  const int64_t H = o.hidden, I = o.intermediate;
  const int E = o.experts;
  const std::string load_before = load_average();

  // Machine ceiling for streaming: memcpy of a buffer much larger than cache.
  double memcpy_gbs = 0;
  {
    std::vector<char> src(static_cast<size_t>(o.memcpy_bytes), 1), dst(static_cast<size_t>(o.memcpy_bytes), 0);
    memcpy_gbs = static_cast<double>(o.memcpy_bytes) /
                 median_seconds(o, [&] { std::memcpy(dst.data(), src.data(), src.size()); }) / 1e9;
  }
  ScratchDir scratch;
  const std::string python = default_path(o.peer_python, ".venv/bin/python");
  const std::string script = default_path(o.peer_script, "tools/torch_cpu_moe_peer.py");

  CpuBackend probe(CpuBackendOptions{.threads = o.threads, .kernel = o.kernel});
  const int threads = probe.threads();
  out << "moectl bench engine: one MoE layer through the CPU backend (kernel " << cpu_kernel_name(probe.kernel()) << ", "
      << threads << " threads)\n"
      << "  shape: hidden " << H << ", intermediate " << I << ", experts " << E << ", top_k " << o.top_k
      << " (synthetic model, seed " << o.seed << "); routing: Router (mixtral softmax top-k)\n"
      << "  GFLOP/s counts 2*3*H*I per (token, expert) assignment; weights GB/s = bytes the backend holds for the\n"
      << "  experts touched / s\n"
      << "  memcpy " << fixed_or_dash(memcpy_gbs, 1) << " GB/s (bytes copied / s, " << (o.memcpy_bytes >> 20)
      << " MiB buffer); load average before: " << load_before << " (" << ::sysconf(_SC_NPROCESSORS_ONLN) << " CPUs)\n"
      << "  ours and peer alternate (ABAB, " << o.pairs << " pairs, >= " << o.min_seconds
      << " s a segment); ms = median of the segment medians; peer/ours = median of the per-pair ratios\n"
      << "  peer diff = max |ours - peer| / max |ours| on one input; thr = threads, ours and the peer's torch\n"
      << "  threads, each the faster of " << threads << " and 1 chosen per row by the median of 3 calls (the peer: 1 call\n"
      << "  when a call takes > 1 s; ours: packed kernels only); on a loaded box a second thread can cost more than it gives\n"
      << "  blas f32 = today's path (kernel blas: OpenBLAS sgemm + streaming kernels) on the f32 weights, same run\n";

  const std::vector<std::pair<std::string, int>> columns{
      {"weights", 8},   {"T", 6},         {"ours ms", 10},     {"thr", 4},     {"GFLOP/s", 9}, {"peer ms", 10},
      {"thr", 4},       {"peer/ours", 10}, {"peer diff", 10}, {"blas f32 ms", 12}, {"GFLOP/s", 9},
      {"weights GB/s", 13}, {"  targets", 0}};
  std::map<int64_t, double> blas_gflops;  // today's f32, per T
  std::vector<std::string> notes;

  for (DType dtype : o.dtypes) {
    const Layer layer = make_layer(o, dtype);
    // Ours gets the same choice as the peer: our thread count or 1, per row. Only for the packed kernels,
    // whose work is all on the backend's own pool (OpenBLAS's thread count is process-wide, so a
    // one-thread blas backend would not be one); built first, so the others then set OpenBLAS's count.
    std::unique_ptr<CpuBackend> single;
    if (threads > 1 && probe.kernel() != CpuKernel::Blas) {
      single = std::make_unique<CpuBackend>(CpuBackendOptions{.threads = 1, .kernel = o.kernel});
      for (int e = 0; e < E; ++e) single->load_expert({0, e}, layer.source->expert_weights(0, e).view);
    }
    auto backend = std::make_unique<CpuBackend>(CpuBackendOptions{.threads = o.threads, .kernel = o.kernel});
    for (int e = 0; e < E; ++e) backend->load_expert({0, e}, layer.source->expert_weights(0, e).view);
    std::unique_ptr<CpuBackend> blas;
    if (dtype == DType::F32 && o.blas_reference) {
      blas = std::make_unique<CpuBackend>(CpuBackendOptions{.threads = o.threads, .kernel = CpuKernel::Blas});
      for (int e = 0; e < E; ++e) blas->load_expert({0, e}, layer.source->expert_weights(0, e).view);
    }
    std::unique_ptr<TorchPeer> peer;
    std::string why_no_peer = "not asked for (--no-peer)";
    if (o.peer) {
      const std::string weights_file = scratch.file("weights.bin");
      write_weights(layer, o, weights_file);
      TorchPeerConfig pc{python, script, H, I, E, o.top_k, dtype, threads, weights_file};
      peer = TorchPeer::start(pc, &why_no_peer);
      std::filesystem::remove(weights_file);
    }
    out << "\n" << dtype_name(dtype) << " expert weights: " << fixed_or_dash(backend->resident_bytes() / 1048576.0, 1)
        << " MiB resident; peer: " << (peer ? "PyTorch (" + peer->banner().substr(6) + ", HF-style expert loop, " +
                                                  (dtype == DType::BF16 ? "bf16 activations" : "f32") + ")"
                                            : "not measured: " + why_no_peer)
        << "\n";
    for (auto& [name, width] : columns) out << std::setw(width) << name;
    out << "\n";
    SeededUniform rng(o.seed);  // the input tokens

    for (int64_t T : o.tokens) {
      // When T tokens cannot touch every expert (decode), successive runs use different inputs, so the
      // weights come from memory as in a real model (where the next call is another layer), not from a
      // cache still holding the previous run's experts. The peer cycles through the same inputs.
      const int num_inputs = T * o.top_k < E ? kDecodeInputs : 1;
      std::vector<RoutedInput> inputs;
      for (int v = 0; v < num_inputs; ++v) inputs.push_back(route_random_input(*layer.router, T, E, rng));
      std::vector<float> y(static_cast<size_t>(T * H));
      size_t next = 0;
      CpuBackend* chosen = backend.get();
      auto ours = [&] {
        const RoutedInput& in = inputs[next++ % inputs.size()];
        chosen->forward(0, in.x.data.data(), T, H, in.assignments, y.data());
      };
      int ours_threads = threads;
      if (single) {  // the faster of `threads` and 1, by the median of 3 calls each
        BenchEngineOptions three = o;
        three.min_seconds = 0, three.min_reps = 3, three.max_reps = 3;
        const double many_s = median_seconds(three, ours);
        chosen = single.get();
        if (median_seconds(three, ours) < many_s) {
          ours_threads = 1;
        } else {
          chosen = backend.get();
        }
      }
      std::vector<double> ours_s, peer_ms;
      double peer_diff = -1;
      int peer_threads = 0;
      if (peer) {
        std::vector<PeerInput> sets;
        for (const RoutedInput& in : inputs) sets.push_back(in.peer);
        peer->set_inputs(scratch.file("inputs.bin"), T, sets);
        // Output check on set 0: how far the peer's layer is from ours (bf16 peers keep bf16 activations).
        std::vector<float> mine(static_cast<size_t>(T * H));
        backend->forward(0, inputs[0].x.data.data(), T, H, inputs[0].assignments, mine.data());
        const std::vector<float> theirs = peer->output(scratch.file("output.bin"), T);
        double max_diff = 0, max_ref = 0;
        for (size_t i = 0; i < mine.size(); ++i) {
          max_diff = std::max(max_diff, static_cast<double>(std::abs(mine[i] - theirs[i])));
          max_ref = std::max(max_ref, static_cast<double>(std::abs(mine[i])));
        }
        peer_diff = max_ref > 0 ? max_diff / max_ref : max_diff;
        // The peer runs with the faster of our thread count and 1 thread: on a loaded box torch's OpenMP
        // barriers can cost more than a small layer (seen: 20 ms for one tiny linear with 2 threads).
        // Then reps per peer segment from the calibration call.
        peer_threads = threads;
        double one_ms = peer->run_ms(1);
        const int calibration_reps = one_ms < 1000.0 ? 3 : 1;
        if (calibration_reps > 1) one_ms = peer->run_ms(calibration_reps);
        if (threads > 1) {
          peer->set_threads(1);
          const double single_ms = peer->run_ms(calibration_reps);
          if (single_ms < one_ms) {
            one_ms = single_ms;
            peer_threads = 1;
          } else {
            peer->set_threads(threads);
          }
        }
        const int peer_reps = std::clamp(static_cast<int>(std::ceil(o.min_seconds * 1e3 / std::max(one_ms, 1e-3))), 1, o.max_reps);
        for (int pair = 0; pair < o.pairs; ++pair) {
          ours_s.push_back(median_seconds(o, ours));
          peer_ms.push_back(peer->run_ms(peer_reps));
        }
      } else {
        for (int pair = 0; pair < o.pairs; ++pair) ours_s.push_back(median_seconds(o, ours));
      }
      const double ours_med = median_of(ours_s);
      double ratio = -1, peer_med = -1;
      if (peer) {
        std::vector<double> ours_ms;
        for (double s : ours_s) ours_ms.push_back(s * 1e3);
        ratio = median_ratio(peer_ms, ours_ms);
        peer_med = median_of(peer_ms);
      }
      double blas_s = -1;
      if (blas) {
        next = 0;
        blas_s = median_seconds(o, [&] {
          const RoutedInput& in = inputs[next++ % inputs.size()];
          blas->forward(0, in.x.data.data(), T, H, in.assignments, y.data());
        });
      }

      const double flops = 6.0 * static_cast<double>(H) * static_cast<double>(I) * static_cast<double>(T * o.top_k);
      const double gflops = flops / ours_med / 1e9;
      if (blas_s > 0) blas_gflops[T] = flops / blas_s / 1e9;
      double touched = 0;  // experts with tokens, averaged over the inputs
      for (const RoutedInput& in : inputs)
        touched += static_cast<double>(std::count_if(in.per_expert.begin(), in.per_expert.end(), [](int64_t n) { return n > 0; }));
      touched /= static_cast<double>(inputs.size());
      // Bytes an expert's weights take in the backend (what it reads): bf16 stays 2 bytes on the packed
      // kernels, becomes 4 on blas.
      const double expert_bytes = static_cast<double>(backend->resident_bytes()) / E;
      const double weight_gbs = touched * expert_bytes / ours_med / 1e9;

      std::string targets;
      auto add = [&](const std::string& t) { targets += (targets.empty() ? "" : "; ") + t; };
      add(peer ? "faster than peer " + met(ratio > 1.0) : "faster than peer: no peer");
      if (T == 1) add("weights >= 80% memcpy " + met(weight_gbs >= 0.8 * memcpy_gbs));
      if (dtype == DType::BF16 && T >= 1024) {
        auto it = blas_gflops.find(T);
        add(it == blas_gflops.end() ? std::string(">= 2x blas f32: not measured (needs f32 first)")
                                    : ">= 2x blas f32 " + met(gflops >= 2.0 * it->second) + " (" +
                                          fixed_or_dash(gflops / it->second, 1) + "x)");
      }
      const std::vector<std::string> cells{dtype == DType::BF16 ? "bf16" : "f32",
                                           std::to_string(T),
                                           millis(ours_med),
                                           std::to_string(ours_threads),
                                           rate(gflops),
                                           peer ? millis(peer_med * 1e-3) : "-",
                                           peer ? std::to_string(peer_threads) : "-",
                                           peer ? fixed_or_dash(ratio, 2) + "x" : "-",
                                           sci(peer_diff),
                                           millis(blas_s),
                                           blas_s > 0 ? rate(flops / blas_s / 1e9) : "-",
                                           rate(weight_gbs),
                                           "  " + targets};
      for (size_t c = 0; c < cells.size(); ++c) out << std::setw(columns[c].second) << cells[c];
      out << "\n";
    }
  }
  out << "\nload average after: " << load_average() << "\n";
  return 0;
}

}  // namespace moe
