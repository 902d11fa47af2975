// The deterministic mode's cost on the local engine (see bench_determinism.h).
#include "cli/bench_determinism.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>
#include <iomanip>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "cli/cluster_executor.h"
#include "cli/random_tokens.h"
#include "kernels/cpu/cpu_backend.h"
#include "runtime/client/local_cluster.h"
#include "runtime/engine/local_engine.h"
#include "runtime/model/synthetic_model.h"

namespace moe {
namespace {

using Clock = std::chrono::steady_clock;

std::string load_average() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  if (!(f >> a >> b >> c)) return "unknown";
  return a + " " + b + " " + c;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}


std::string fixed(double v, int precision) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(precision) << v;
  return s.str();
}

// True when row 0 of engine.forward(x) is the same bits as engine.forward(x[0:1]).
bool first_row_alone_same(LocalEngine& engine, const Matrix& x) {
  const Matrix all = engine.forward(0, x);
  Matrix one(1, x.cols);
  std::copy_n(x.row(0), x.cols, one.row(0));
  const Matrix alone = engine.forward(0, one);
  return std::memcmp(all.row(0), alone.row(0), static_cast<size_t>(x.cols) * sizeof(float)) == 0;
}

}  // namespace

int run_bench_engine_determinism(const BenchEngineOptions& o, std::ostream& out) {
  const std::string load_before = load_average();
  CpuBackend probe(CpuBackendOptions{.threads = o.threads, .kernel = o.kernel});
  out << "moectl bench engine --deterministic: one MoE layer through LocalEngine (route + experts + combine), "
      << "default mode vs deterministic mode, same run\n"
      << "  CPU kernel " << cpu_kernel_name(probe.kernel()) << ", " << probe.threads() << " threads; shape: hidden "
      << o.hidden << ", intermediate " << o.intermediate << ", experts " << o.experts << ", top_k " << o.top_k
      << " (synthetic mixtral, seed " << o.seed << ")\n"
      << "  ABAB: " << o.pairs << " pairs of segments (>= " << o.min_seconds
      << " s each); ms = median of the segment medians; cost = median of the per-pair ratios det/default - 1\n"
      << "  row 0 alone = the first token's output is the same bits computed alone as in its batch\n"
      << "  load average before: " << load_before << " (" << ::sysconf(_SC_NPROCESSORS_ONLN) << " CPUs)\n";
  const std::vector<std::pair<std::string, int>> columns{{"weights", 8},  {"T", 6},         {"default ms", 12},
                                                         {"det ms", 10},  {"cost", 9},       {"row 0 alone: default", 22},
                                                         {"det", 6},      {"  target", 0}};
  for (DType dtype : o.dtypes) {
    SyntheticLayerSource source(bench_engine_model(o, dtype));
    LocalEngine plain(source, std::make_unique<CpuBackend>(CpuBackendOptions{.threads = o.threads, .kernel = o.kernel}));
    LocalEngine det(source, std::make_unique<CpuBackend>(CpuBackendOptions{.threads = o.threads, .kernel = o.kernel}),
                    LocalEngineOptions{.layers = {}, .deterministic = true});
    out << "\n" << dtype_name(dtype) << " expert weights\n";
    for (auto& [name, width] : columns) out << std::setw(width) << name;
    out << "\n";
    std::mt19937 rng(static_cast<uint32_t>(o.seed));
    std::normal_distribution<float> normal(0.f, 1.f);
    for (int64_t T : o.tokens) {
      // Decode-sized batches cycle through several inputs, so the experts touched change between calls.
      const int num_inputs = T * o.top_k < o.experts ? 8 : 1;
      std::vector<Matrix> inputs;
      for (int i = 0; i < num_inputs; ++i) {
        Matrix x(T, o.hidden);
        for (float& v : x.data) v = normal(rng);
        inputs.push_back(std::move(x));
      }
      size_t next = 0;
      auto run = [&](LocalEngine& engine) { return [&] { engine.forward(0, inputs[next++ % inputs.size()]); }; };
      std::vector<double> plain_s, det_s, ratios;
      for (int pair = 0; pair < o.pairs; ++pair) {
        plain_s.push_back(median_seconds(o, run(plain)));
        det_s.push_back(median_seconds(o, run(det)));
        ratios.push_back(det_s.back() / plain_s.back());
      }
      const double cost = median(ratios) - 1.0;
      const bool plain_same = first_row_alone_same(plain, inputs[0]);
      const bool det_same = first_row_alone_same(det, inputs[0]);
      std::string target = T >= 128 ? (cost <= 0.10 ? "<= 10% met" : "<= 10% MISSED") : "-";
      const std::vector<std::string> cells{dtype == DType::BF16 ? "bf16" : "f32",
                                           std::to_string(T),
                                           fixed(median(plain_s) * 1e3, 3),
                                           fixed(median(det_s) * 1e3, 3),
                                           fixed(cost * 100.0, 1) + "%",
                                           plain_same ? "same" : "DIFFERS",
                                           det_same ? "same" : "DIFFERS",
                                           "  " + target};
      for (size_t c = 0; c < cells.size(); ++c) out << std::setw(columns[c].second) << cells[c];
      out << "\n";
    }
  }
  out << "\nload average after: " << load_average() << "\n";
  return 0;
}

namespace {


bool first_row_alone_same(ClusterClient& client, int32_t layer, const Matrix& x) {
  const Matrix all = client.forward(layer, x);
  Matrix one(1, x.cols);
  std::copy_n(x.row(0), x.cols, one.row(0));
  const Matrix alone = client.forward(layer, one);
  return std::memcmp(all.row(0), alone.row(0), static_cast<size_t>(x.cols) * sizeof(float)) == 0;
}

}  // namespace

int run_bench_cluster_determinism(const BenchClusterOptions& o, std::ostream& out) {
  if (o.workers < 1) throw std::invalid_argument("bench cluster: --workers must be >= 1, got " + std::to_string(o.workers));
  const std::string load_before = load_average();
  auto make = [&](bool deterministic) {
    LocalClusterOptions c;
    c.bin_dir = o.bin_dir.empty() ? executable_dir() : o.bin_dir;
    c.workers = o.workers;
    c.model = "synthetic:" + o.synthetic + ":0";
    c.log_dir = (std::filesystem::temp_directory_path() /
                 ("moe-bench-det-" + std::to_string(::getpid()) + (deterministic ? "-det" : "-default")))
                    .string();
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    c.worker_threads = std::max(1, cores / o.workers);
    if (deterministic) c.coordinator_args = {"--deterministic"};
    return std::make_unique<LocalCluster>(c);
  };
  auto plain_cluster = make(false);
  auto det_cluster = make(true);
  plain_cluster->wait_ready(std::chrono::seconds(o.ready_timeout_s));
  det_cluster->wait_ready(std::chrono::seconds(o.ready_timeout_s));
  auto plain = cli::make_cluster_client(plain_cluster->coordinator_address(), o.wire_dtype, std::chrono::seconds(60),
                                        o.cluster_token);
  auto det = cli::make_cluster_client(det_cluster->coordinator_address(), o.wire_dtype, std::chrono::seconds(60),
                                      o.cluster_token);
  if (plain->model()->deterministic || !det->model()->deterministic)
    throw std::runtime_error("bench cluster --deterministic: the clusters' modelInfo says deterministic = " +
                             std::to_string(plain->model()->deterministic) + " and " +
                             std::to_string(det->model()->deterministic) + ", expected 0 and 1");
  const ModelSpec& spec = plain->spec();
  const int32_t layer = spec.moe_layers.front();
  out << "moectl bench cluster --deterministic: two loopback clusters side by side (1 coordinator + " << o.workers
      << " workers each, synthetic '" << o.synthetic << "': hidden " << spec.hidden_size << ", intermediate "
      << spec.moe_intermediate_size << ", " << spec.num_experts << " experts, top-" << spec.top_k << "), "
      << o.wire_dtype << " on the wire; one coordinator with --deterministic\n"
      << "  ABAB: " << o.pairs << " pairs of segments (>= " << o.min_seconds
      << " s each) per T; ms = median of the segment medians; cost = median of the per-pair ratios det/default - 1\n"
      << "  row 0 alone = the first token's output is the same bits computed alone as in its batch\n"
      << "  load average before: " << load_before << " (" << ::sysconf(_SC_NPROCESSORS_ONLN) << " CPUs)\n";
  const std::vector<std::pair<std::string, int>> columns{{"T", 6},     {"default ms", 12}, {"det ms", 10},
                                                         {"cost", 9},  {"row 0 alone: default", 22},
                                                         {"det", 6},   {"  target", 0}};
  for (auto& [name, width] : columns) out << std::setw(width) << name;
  out << "\n";
  for (int64_t T : o.tokens) {
    const Matrix x = random_tokens(T, spec.hidden_size, o.seed + static_cast<uint64_t>(T));
    std::vector<double> plain_ms, det_ms, ratios;
    for (int pair = 0; pair < o.pairs; ++pair) {
      plain_ms.push_back(time_calls(o, [&] { plain->forward(layer, x); }).median_ms);
      det_ms.push_back(time_calls(o, [&] { det->forward(layer, x); }).median_ms);
      ratios.push_back(det_ms.back() / plain_ms.back());
    }
    const double cost = median(ratios) - 1.0;
    const std::string target = T >= 128 ? (cost <= 0.10 ? "<= 10% met" : "<= 10% MISSED") : "-";
    const std::vector<std::string> cells{std::to_string(T),
                                         fixed(median(plain_ms), 3),
                                         fixed(median(det_ms), 3),
                                         fixed(cost * 100.0, 1) + "%",
                                         first_row_alone_same(*plain, layer, x) ? "same" : "DIFFERS",
                                         first_row_alone_same(*det, layer, x) ? "same" : "DIFFERS",
                                         "  " + target};
    for (size_t c = 0; c < cells.size(); ++c) out << std::setw(columns[c].second) << cells[c];
    out << "\n";
  }
  plain.reset();
  det.reset();
  plain_cluster->stop();
  det_cluster->stop();
  out << "\nload average after: " << load_average() << "\n";
  return 0;
}

}  // namespace moe

