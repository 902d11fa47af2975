// bench_kernels: times the CUDA backend's layer forward on device data (forward_device) for real MoE
// shapes and token counts, and prints ms per layer, TFLOP/s, GB/s of expert weights touched, the floor
// max(bytes / 4.3e12, flops / 790e12) and measured / floor. Routing: random router logits, softmax,
// top-k, renormalised. Each (shape, T) rotates over 4 input sets (different tokens and routing) so
// repeated runs do not time the L2 cache, replays one CUDA graph per set (direct launches if capture
// fails), and takes the median of per-replay CUDA event timings after a warm-up. One output row per
// configuration is checked against a double-precision host reference ("err" column).
//
// --paths: "auto" (default) times what the backend picks; "all" times auto's pick and then every path
// (streaming, tiles32, tiles64, tiles128, cublas; streaming skipped above 64 mean rows per expert, where
// it re-reads the weights once per 16 rows) on the same inputs, and names the fastest, so the thresholds
// of auto_expert_path can be set from one run; or a comma list of path names.
//
// usage: bench_kernels [--shapes mixtral,qwen3,deepseek] [--tokens 1,16,128,1024,4096,16384]
//                      [--paths auto|all|LIST] [--device N] [--min-ms 300] [--csv FILE]
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_check.h"
#include "runtime/core/dtype.h"

namespace moe::bench {
namespace {

constexpr double kBandwidth = 4.3e12;  // bytes/s, measured device-to-device copy on an H200
constexpr double kMatrixRate = 790e12;  // bf16 FLOP/s, measured 8192^3 product on an H200
constexpr int kInputSets = 4;

struct Shape {
  std::string name;
  int64_t hidden, inter, experts, top_k;
};

const std::vector<Shape> kShapes = {
    {"mixtral", 4096, 14336, 8, 2},
    {"qwen3", 2048, 768, 128, 8},
    {"deepseek", 7168, 2048, 256, 8},
};

struct Options {
  std::vector<std::string> shapes = {"mixtral", "qwen3", "deepseek"};
  std::vector<int64_t> tokens = {1, 16, 128, 1024, 4096, 16384};
  std::vector<CudaExpertPath> paths = {CudaExpertPath::kAuto};
  int device = 0;
  double min_ms = 300;
  std::string csv;
};

const std::vector<CudaExpertPath> kAllPaths = {CudaExpertPath::kAuto,     CudaExpertPath::kStreaming,
                                               CudaExpertPath::kTiles32,  CudaExpertPath::kTiles64,
                                               CudaExpertPath::kTiles128, CudaExpertPath::kCublas};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument("missing value after " + arg);
      return argv[++i];
    };
    if (arg == "--shapes") {
      o.shapes = split(value());
    } else if (arg == "--tokens") {
      o.tokens.clear();
      for (const auto& t : split(value())) o.tokens.push_back(std::stoll(t));
    } else if (arg == "--paths") {
      const std::string v = value();
      if (v == "all") {
        o.paths = kAllPaths;
      } else {
        o.paths.clear();
        for (const auto& name : split(v)) {
          const auto path = parse_cuda_expert_path(name);
          if (!path) {
            throw std::invalid_argument("unknown path '" + name +
                                        "' (auto, all, streaming, tiles32, tiles64, tiles128, cublas)");
          }
          o.paths.push_back(*path);
        }
      }
    } else if (arg == "--device") {
      o.device = std::stoi(value());
    } else if (arg == "--min-ms") {
      o.min_ms = std::stod(value());
    } else if (arg == "--csv") {
      o.csv = value();
    } else {
      throw std::invalid_argument("unknown argument " + arg +
                                  " (use --shapes, --tokens, --paths, --device, --min-ms, --csv)");
    }
  }
  return o;
}

// Random bf16 values the experts' views are cut from (at expert-dependent offsets).
struct WeightSource {
  std::vector<uint16_t> values;
  int64_t matrix_elems = 0;

  WeightSource(const Shape& s, uint64_t seed) : matrix_elems(s.hidden * s.inter) {
    values.resize(static_cast<size_t>(2 * matrix_elems + 4096));
    std::mt19937_64 rng(seed);
    const float scale = 1.f / std::sqrt(static_cast<float>(s.hidden));
    for (auto& v : values) {
      const float u = static_cast<float>(rng() >> 40) / static_cast<float>(1 << 24) * 2.f - 1.f;
      v = f32_to_bf16(u * scale * 1.7f);
    }
  }
  const uint16_t* matrix(int64_t expert, int which) const {
    const int64_t span = static_cast<int64_t>(values.size()) - matrix_elems;
    const int64_t offset = ((expert * 3 + which) * 1000003) % span;
    return values.data() + offset;
  }
  ExpertWeightsView view(const Shape& s, int64_t expert) const {
    ExpertWeightsView v;
    v.gate = {DType::BF16, matrix(expert, 0), s.inter, s.hidden};
    v.up = {DType::BF16, matrix(expert, 1), s.inter, s.hidden};
    v.down = {DType::BF16, matrix(expert, 2), s.hidden, s.inter};
    return v;
  }
};

// Softmax over random logits, top-k, weights renormalised to sum 1.
std::vector<TokenAssignment> route(const Shape& s, int64_t tokens, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<TokenAssignment> out;
  out.reserve(static_cast<size_t>(tokens * s.top_k));
  std::vector<float> logits(static_cast<size_t>(s.experts));
  std::vector<int32_t> order(static_cast<size_t>(s.experts));
  for (int64_t t = 0; t < tokens; ++t) {
    for (auto& l : logits) l = normal(rng);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + s.top_k, order.end(),
                      [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
    double sum = 0;
    for (int64_t k = 0; k < s.top_k; ++k) sum += std::exp(logits[order[k]] - logits[order[0]]);
    for (int64_t k = 0; k < s.top_k; ++k) {
      const float w = static_cast<float>(std::exp(logits[order[k]] - logits[order[0]]) / sum);
      out.push_back({static_cast<int32_t>(t), order[k], w});
    }
  }
  return out;
}

// Double-precision reference of one output row.
std::vector<double> reference_row(const Shape& s, const WeightSource& w, const float* x,
                                  const std::vector<TokenAssignment>& assignments, int32_t token) {
  std::vector<double> out(static_cast<size_t>(s.hidden), 0.0);
  std::vector<double> h(static_cast<size_t>(s.inter));
  for (const auto& a : assignments) {
    if (a.token != token) continue;
    const uint16_t* gate = w.matrix(a.expert, 0);
    const uint16_t* up = w.matrix(a.expert, 1);
    const uint16_t* down = w.matrix(a.expert, 2);
    for (int64_t i = 0; i < s.inter; ++i) {
      double g = 0, u = 0;
      for (int64_t k = 0; k < s.hidden; ++k) {
        g += static_cast<double>(bf16_to_f32(gate[i * s.hidden + k])) * x[k];
        u += static_cast<double>(bf16_to_f32(up[i * s.hidden + k])) * x[k];
      }
      h[i] = g / (1.0 + std::exp(-g)) * u;
    }
    for (int64_t j = 0; j < s.hidden; ++j) {
      double y = 0;
      for (int64_t i = 0; i < s.inter; ++i) y += static_cast<double>(bf16_to_f32(down[j * s.inter + i])) * h[i];
      out[j] += a.weight * y;
    }
  }
  return out;
}

struct DeviceSet {
  float* x = nullptr;
  float* out = nullptr;
  TokenAssignment* assignments = nullptr;
  int64_t num_assignments = 0;
  std::vector<float> host_x;
  std::vector<TokenAssignment> host_assignments;
  int64_t experts_touched = 0;
  cudaGraphExec_t graph = nullptr;
  ~DeviceSet() {
    if (graph != nullptr) cudaGraphExecDestroy(graph);
    cudaFree(x);
    cudaFree(out);
    cudaFree(assignments);
  }
};

struct Result {
  std::string shape;
  std::string path;  // the path timed ("auto:tiles64" when auto picked tiles64)
  int64_t tokens = 0;
  double experts_touched = 0;
  double ms = 0;
  double tflops = 0;
  double gbps = 0;
  double floor_ms = 0;
  double ratio = 0;
  double err = 0;
  bool graph = false;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

using InputSets = std::vector<std::unique_ptr<DeviceSet>>;

InputSets make_sets(const Shape& s, int64_t tokens, std::mt19937_64& rng) {
  InputSets sets;
  std::uniform_real_distribution<float> uniform(-1.f, 1.f);
  for (int i = 0; i < kInputSets; ++i) {
    auto set = std::make_unique<DeviceSet>();
    set->host_x.resize(static_cast<size_t>(tokens * s.hidden));
    for (auto& v : set->host_x) v = uniform(rng);
    set->host_assignments = route(s, tokens, rng);
    set->num_assignments = static_cast<int64_t>(set->host_assignments.size());
    std::set<int32_t> touched;
    for (const auto& a : set->host_assignments) touched.insert(a.expert);
    set->experts_touched = static_cast<int64_t>(touched.size());
    const size_t xb = set->host_x.size() * sizeof(float);
    const size_t ab = set->host_assignments.size() * sizeof(TokenAssignment);
    MOE_CUDA_CHECK(cudaMalloc(&set->x, xb));
    MOE_CUDA_CHECK(cudaMalloc(&set->out, xb));
    MOE_CUDA_CHECK(cudaMalloc(&set->assignments, ab));
    MOE_CUDA_CHECK(cudaMemcpy(set->x, set->host_x.data(), xb, cudaMemcpyHostToDevice));
    MOE_CUDA_CHECK(cudaMemcpy(set->assignments, set->host_assignments.data(), ab, cudaMemcpyHostToDevice));
    sets.push_back(std::move(set));
  }
  // A cudaMemcpy from pageable memory may return before its DMA lands, and it runs on the legacy
  // stream, which the (non-blocking) timing stream does not wait for.
  MOE_CUDA_CHECK(cudaDeviceSynchronize());
  return sets;
}

// One output row of set 0 and its double-precision reference, checked after every path's warm-up.
struct CheckedRow {
  int32_t token = 0;
  std::vector<double> want;
};

double row_error(const DeviceSet& set, const Shape& s, const CheckedRow& row) {
  std::vector<float> got(static_cast<size_t>(s.hidden));
  MOE_CUDA_CHECK(cudaMemcpy(got.data(), set.out + row.token * s.hidden, got.size() * sizeof(float),
                            cudaMemcpyDeviceToHost));
  double diff = 0, norm = 0;
  for (size_t j = 0; j < got.size(); ++j) {
    diff += (got[j] - row.want[j]) * (got[j] - row.want[j]);
    norm += row.want[j] * row.want[j];
  }
  return std::isfinite(diff) ? std::sqrt(diff / std::max(norm, 1e-300)) : INFINITY;
}

Result time_path(CudaBackend& backend, const Shape& s, int64_t tokens, const InputSets& sets, const CheckedRow& row,
                 const Options& opt, cudaStream_t stream) {
  auto args_of = [&](const DeviceSet& set) {
    DeviceForwardArgs a;
    a.layer = 0;
    a.x = set.x;
    a.num_tokens = tokens;
    a.hidden = s.hidden;
    a.assignments = set.assignments;
    a.num_assignments = set.num_assignments;
    a.out = set.out;
    return a;
  };

  // Poison the outputs, then warm up (also grows the workspace to its final size, so capture allocates
  // nothing) and check one row against the host reference. The poison goes on `stream` (non-blocking:
  // a cudaMemset on the legacy stream would not be ordered before the forwards).
  for (auto& set : sets) {
    MOE_CUDA_CHECK(cudaMemsetAsync(set->out, 0xff, static_cast<size_t>(tokens * s.hidden) * 4, stream));
  }
  for (int rep = 0; rep < 2; ++rep) {
    for (auto& set : sets) backend.forward_device(args_of(*set), stream);
  }
  backend.check_device_assignments(stream);
  Result r;
  r.err = row_error(*sets[0], s, row);

  // One graph per input set (the cuBLAS path reads counts back to the host: direct launches).
  const bool capturable = backend.resolve_expert_path(0, sets[0]->num_assignments) != CudaExpertPath::kCublas;
  r.graph = capturable;
  for (auto& set : sets) {
    if (!r.graph) break;
    cudaGraph_t graph = nullptr;
    if (cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
      r.graph = false;
      break;
    }
    try {
      backend.forward_device(args_of(*set), stream);
    } catch (const std::exception&) {
      r.graph = false;
    }
    const cudaError_t end = cudaStreamEndCapture(stream, &graph);
    if (!r.graph || end != cudaSuccess || cudaGraphInstantiate(&set->graph, graph, 0) != cudaSuccess) {
      r.graph = false;
      if (graph != nullptr) cudaGraphDestroy(graph);
      (void)cudaGetLastError();
      break;
    }
    cudaGraphDestroy(graph);
  }
  for (auto& set : sets) {  // graphs are per path: drop them after timing (or now, if capture failed)
    if (!r.graph && set->graph != nullptr) {
      cudaGraphExecDestroy(set->graph);
      set->graph = nullptr;
    }
  }
  auto launch = [&](const DeviceSet& set) {
    if (r.graph) {
      MOE_CUDA_CHECK(cudaGraphLaunch(set.graph, stream));
    } else {
      backend.forward_device(args_of(set), stream);
    }
  };

  // Estimate one run, then time enough replays for opt.min_ms (at least 10, at most 2000).
  cudaEvent_t start, stop;
  MOE_CUDA_CHECK(cudaEventCreate(&start));
  MOE_CUDA_CHECK(cudaEventCreate(&stop));
  MOE_CUDA_CHECK(cudaEventRecord(start, stream));
  for (int i = 0; i < kInputSets; ++i) launch(*sets[i]);
  MOE_CUDA_CHECK(cudaEventRecord(stop, stream));
  MOE_CUDA_CHECK(cudaEventSynchronize(stop));
  float estimate_ms = 0;
  MOE_CUDA_CHECK(cudaEventElapsedTime(&estimate_ms, start, stop));
  estimate_ms /= kInputSets;
  const int iterations = static_cast<int>(std::clamp(opt.min_ms / std::max(estimate_ms, 1e-3f), 10.0, 2000.0));

  std::vector<cudaEvent_t> events(static_cast<size_t>(iterations) + 1);
  for (auto& e : events) MOE_CUDA_CHECK(cudaEventCreate(&e));
  MOE_CUDA_CHECK(cudaEventRecord(events[0], stream));
  for (int i = 0; i < iterations; ++i) {
    launch(*sets[static_cast<size_t>(i % kInputSets)]);
    MOE_CUDA_CHECK(cudaEventRecord(events[static_cast<size_t>(i) + 1], stream));
  }
  MOE_CUDA_CHECK(cudaStreamSynchronize(stream));
  MOE_CUDA_CHECK(cudaGetLastError());
  std::vector<double> times;
  for (int i = 0; i < iterations; ++i) {
    float ms = 0;
    MOE_CUDA_CHECK(cudaEventElapsedTime(&ms, events[static_cast<size_t>(i)], events[static_cast<size_t>(i) + 1]));
    times.push_back(ms);
  }
  for (auto& e : events) cudaEventDestroy(e);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  backend.check_device_assignments(stream);
  for (auto& set : sets) {
    if (set->graph != nullptr) cudaGraphExecDestroy(set->graph);
    set->graph = nullptr;
  }

  double touched = 0;
  for (const auto& set : sets) touched += static_cast<double>(set->experts_touched);
  touched /= kInputSets;
  const double flops = 2.0 * static_cast<double>(tokens * s.top_k) * 3.0 * s.hidden * s.inter;
  const double bytes = touched * 3.0 * s.hidden * s.inter * 2.0;
  r.shape = s.name;
  r.tokens = tokens;
  r.experts_touched = touched;
  r.ms = median(times);
  r.tflops = flops / (r.ms * 1e-3) / 1e12;
  r.gbps = bytes / (r.ms * 1e-3) / 1e9;
  r.floor_ms = std::max(bytes / kBandwidth, flops / kMatrixRate) * 1e3;
  r.ratio = r.ms / r.floor_ms;
  return r;
}

// Times every path of opt.paths on one (shape, T) with the same inputs.
std::vector<Result> run_config(CudaBackend& backend, const Shape& s, const WeightSource& weights, int64_t tokens,
                               const Options& opt, cudaStream_t stream, std::mt19937_64& rng) {
  const InputSets sets = make_sets(s, tokens, rng);
  CheckedRow row;
  row.token = static_cast<int32_t>(rng() % static_cast<uint64_t>(tokens));
  row.want = reference_row(s, weights, sets[0]->host_x.data() + row.token * s.hidden, sets[0]->host_assignments,
                           row.token);
  const double mean_rows = static_cast<double>(sets[0]->num_assignments) /
                           static_cast<double>(std::max<int64_t>(1, sets[0]->experts_touched));
  std::vector<Result> results;
  for (CudaExpertPath path : opt.paths) {
    if (path == CudaExpertPath::kStreaming && mean_rows > 64 && opt.paths.size() > 1) continue;
    backend.set_expert_path(path);
    Result r = time_path(backend, s, tokens, sets, row, opt, stream);
    r.path = std::string(to_string(path));
    if (path == CudaExpertPath::kAuto) {
      r.path += ":" + std::string(to_string(backend.resolve_expert_path(0, sets[0]->num_assignments)));
    }
    results.push_back(r);
  }
  backend.set_expert_path(CudaExpertPath::kAuto);
  return results;
}

void print_header() {
  std::printf("%-9s %6s %-15s %8s %10s %8s %8s %9s %7s %9s %5s\n", "shape", "T", "path", "experts", "ms", "TFLOP/s",
              "GB/s", "floor_ms", "ratio", "err", "graph");
}

void print_row(const Result& r, const char* note = "") {
  std::printf("%-9s %6lld %-15s %8.1f %10.4f %8.1f %8.1f %9.4f %7.2f %9.2e %5s%s%s\n", r.shape.c_str(),
              static_cast<long long>(r.tokens), r.path.c_str(), r.experts_touched, r.ms, r.tflops, r.gbps, r.floor_ms,
              r.ratio, r.err, r.graph ? "yes" : "no", r.err > 2e-2 ? "  ERROR>2e-2" : "", note);
  std::fflush(stdout);
}

// impl "moe_cuda" is what the backend runs by default (auto's pick); "moe_cuda:PATH" a forced path.
void write_csv_row(std::ofstream& csv, const Result& r) {
  const bool is_auto = r.path.rfind("auto", 0) == 0;
  csv << (is_auto ? std::string("moe_cuda") : "moe_cuda:" + r.path) << ',' << r.path << ',' << r.shape << ','
      << r.tokens << ',' << r.experts_touched << ',' << r.ms << ',' << r.tflops << ',' << r.gbps << ',' << r.floor_ms
      << ',' << r.ratio << ',' << r.err << ',' << (r.graph ? "yes" : "no") << std::endl;
}

int run(const Options& opt) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::fprintf(stderr, "bench_kernels: no CUDA device\n");
    return 2;
  }
  MOE_CUDA_CHECK(cudaSetDevice(opt.device));
  cudaDeviceProp props{};
  MOE_CUDA_CHECK(cudaGetDeviceProperties(&props, opt.device));
  std::printf("device %d: %s, %d SMs, %.1f GiB\n", opt.device, props.name, props.multiProcessorCount,
              static_cast<double>(props.totalGlobalMem) / (1 << 30));
  cudaStream_t stream;
  MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  std::vector<Result> results;
  // Rows are written as they are measured, so a run cut short keeps what it measured.
  std::ofstream csv;
  if (!opt.csv.empty()) {
    csv.open(opt.csv);
    if (!csv) throw std::runtime_error("cannot write " + opt.csv);
    csv << "impl,path,shape,T,experts_touched,ms,tflops,gbps,floor_ms,ratio,err,graph" << std::endl;
  }
  std::mt19937_64 rng(20240611);
  bool any_error = false;
  for (const auto& name : opt.shapes) {
    auto it = std::find_if(kShapes.begin(), kShapes.end(), [&](const Shape& s) { return s.name == name; });
    if (it == kShapes.end()) throw std::invalid_argument("unknown shape " + name + " (mixtral, qwen3, deepseek)");
    const Shape& s = *it;
    const auto t0 = std::chrono::steady_clock::now();
    WeightSource weights(s, rng());
    auto backend = make_cuda_backend(opt.device);
    for (int64_t e = 0; e < s.experts; ++e) backend->load_expert({0, static_cast<int32_t>(e)}, weights.view(s, e));
    const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("\n%s: hidden %lld, intermediate %lld, %lld experts top-%lld; %.2f GB resident (pool %.2f GB), "
                "loaded in %.1f s\n",
                s.name.c_str(), static_cast<long long>(s.hidden), static_cast<long long>(s.inter),
                static_cast<long long>(s.experts), static_cast<long long>(s.top_k), backend->resident_bytes() / 1e9,
                backend->pool_bytes() / 1e9, load_s);
    print_header();
    for (int64_t tokens : opt.tokens) {
      const std::vector<Result> timed = run_config(*backend, s, weights, tokens, opt, stream, rng);
      const auto fastest = std::min_element(timed.begin(), timed.end(), [](const Result& a, const Result& b) {
        return a.ms < b.ms;
      });
      for (const auto& r : timed) {
        any_error = any_error || !(r.err <= 2e-2);
        print_row(r, timed.size() > 1 && &r == &*fastest ? "  <- fastest" : "");
        if (csv.is_open()) write_csv_row(csv, r);
        results.push_back(r);
      }
    }
  }
  std::printf("\nsummary (floor = max(weight bytes touched / %.1f TB/s, flops / %.0f TFLOP/s))\n", kBandwidth / 1e12,
              kMatrixRate / 1e12);
  print_header();
  for (const auto& r : results) print_row(r);

  cudaStreamDestroy(stream);
  return any_error ? 1 : 0;
}

}  // namespace
}  // namespace moe::bench

int main(int argc, char** argv) {
  try {
    return moe::bench::run(moe::bench::parse(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_kernels: %s\n", e.what());
    return 1;
  }
}
