// The demo: launch, drive, check, summarise, shut down (see cluster_demo.h).
#include "cli/cluster_demo.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <iomanip>
#include <map>
#include <mutex>
#include <numeric>
#include <random>
#include <sstream>
#include <thread>
#include <unistd.h>
#include <vector>

#include "cli/cluster_executor.h"
#include "kernels/expert_backend.h"
#include "runtime/client/cluster_readiness.h"
#include "runtime/client/local_cluster.h"
#include "runtime/engine/local_engine.h"
#include "runtime/metrics/metrics_endpoint.h"
#include "runtime/model/layer_source_factory.h"

namespace moe::cli {

namespace {

using Clock = std::chrono::steady_clock;

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(std::ceil(p * v.size())) - (p > 0 ? 1 : 0));
  return v[i];
}

double max_row_relative_error(const Matrix& got, const Matrix& want) {
  double worst = 0;
  for (int64_t r = 0; r < want.rows; ++r) {
    double diff = 0, norm = 0;
    for (int64_t c = 0; c < want.cols; ++c) {
      const double d = double(got.row(r)[c]) - want.row(r)[c];
      diff += d * d;
      norm += double(want.row(r)[c]) * want.row(r)[c];
    }
    worst = std::max(worst, std::sqrt(diff) / std::max(std::sqrt(norm), 1e-12));
  }
  return worst;
}

// Inputs biased toward a few hot experts: each token is noise + skew * (router row of an expert drawn
// from a Zipf law over a fixed random ranking of the experts).
class SkewedInputs {
 public:
  SkewedInputs(const LayerSource& source, double skew, double zipf, uint64_t seed) : skew_(skew) {
    const ModelSpec& spec = source.spec();
    std::mt19937_64 rng(seed);
    std::vector<double> weights(spec.num_experts);
    for (int32_t r = 0; r < spec.num_experts; ++r) weights[r] = 1.0 / std::pow(r + 1.0, zipf);
    for (int32_t layer : spec.moe_layers) {
      Layer l;
      l.gate = source.router_weights(layer).gate;
      l.ranking.resize(spec.num_experts);
      std::iota(l.ranking.begin(), l.ranking.end(), 0);
      std::shuffle(l.ranking.begin(), l.ranking.end(), rng);
      l.draw = std::discrete_distribution<int32_t>(weights.begin(), weights.end());
      layers_.emplace(layer, std::move(l));
    }
  }

  Matrix make(int32_t layer, int64_t tokens, uint64_t seed) const {
    const Layer& l = layers_.at(layer);
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> noise(0.f, 1.f);
    auto draw = l.draw;
    Matrix x(tokens, l.gate.cols);
    for (int64_t t = 0; t < tokens; ++t) {
      const float* hot = l.gate.row(l.ranking[draw(rng)]);
      for (int64_t c = 0; c < x.cols; ++c) x.row(t)[c] = noise(rng) + static_cast<float>(skew_) * hot[c];
    }
    return x;
  }

 private:
  struct Layer {
    Matrix gate;
    std::vector<int32_t> ranking;
    std::discrete_distribution<int32_t> draw;
  };
  double skew_;
  std::map<int32_t, Layer> layers_;
};

struct Tally {
  std::mutex mutex;
  std::vector<double> latencies_ms;
  int64_t tokens = 0;
  int done = 0;
  int mismatches = 0;
  int errors = 0;
  std::vector<std::string> problems;  // the first few, printed at the end
  void problem(const std::string& what) {
    if (problems.size() < 5) problems.push_back(what);
  }
};

void print_running(std::ostream& out, Tally& tally, const ClusterClient& client, int batches, double seconds) {
  std::vector<double> lat;
  int done, mismatches, errors;
  int64_t tokens;
  {
    std::lock_guard lock(tally.mutex);
    lat = tally.latencies_ms;
    done = tally.done;
    mismatches = tally.mismatches;
    errors = tally.errors;
    tokens = tally.tokens;
  }
  out << std::fixed << std::setprecision(1) << "demo: " << std::setw(5) << seconds << " s  batches " << done << "/"
      << batches << "  tokens " << tokens << "  " << std::setprecision(0) << (seconds > 0 ? tokens / seconds : 0)
      << " tok/s  p50 " << std::setprecision(2) << percentile(lat, 0.5) << " ms  p99 " << percentile(lat, 0.99)
      << " ms  retries " << client.stats().retries << "  mismatches " << mismatches << "  errors " << errors << "  epoch "
      << client.placement()->epoch() << std::endl;
}

std::unique_ptr<LocalCluster> start_local_cluster(const DemoOptions& o, const ModelRef& ref, std::ostream& out) {
  LocalClusterOptions cluster_options;
  cluster_options.bin_dir = o.bin_dir.empty() ? executable_dir() : o.bin_dir;
  cluster_options.workers = o.workers;
  cluster_options.model = ref.to_string();
  cluster_options.log_dir = o.log_dir.empty()
                                ? (std::filesystem::temp_directory_path() / ("moe-demo-" + std::to_string(getpid()))).string()
                                : o.log_dir;
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  cluster_options.worker_threads = o.worker_threads > 0 ? o.worker_threads : std::max(1, int(cores) / o.workers);
  if (o.transport.tls_enabled()) cluster_options.tls = o.transport.files;
  out << "demo: starting moe-coordinator and " << o.workers << " moe-worker from " << cluster_options.bin_dir
      << " on model " << cluster_options.model << " (logs in " << cluster_options.log_dir << ")" << std::endl;
  return std::make_unique<LocalCluster>(cluster_options);
}

using Reference = std::pair<std::unique_ptr<LayerSource>, std::unique_ptr<LocalEngine>>;

Reference load_reference(const ModelRef& ref) {
  auto source = open_layer_source(ref);
  auto engine = std::make_unique<LocalEngine>(*source, make_cpu_backend(0));
  return {std::move(source), std::move(engine)};
}

// --cluster: the coordinator must serve (an epoch with a worker active) and name a model source this
// process can read too, since every output is checked against a LocalEngine of that model.
Reference reference_for_running_cluster(const DemoOptions& o, const ClusterClient& client, std::ostream& out) {
  const std::string source = client.model()->source;
  out << "demo: the cluster serves " << client.model()->name << " (source " << source << ")" << std::endl;
  try {
    return load_reference(ModelRef::parse(source));
  } catch (const std::exception& e) {
    throw std::runtime_error("demo: cannot load the cluster's model source '" + source + "' here to check its outputs (" +
                             e.what() + "); run moectl demo --cluster " + o.cluster +
                             " where that checkpoint folder is readable at the same path");
  }
}

}  // namespace

int run_demo(const DemoOptions& o, std::ostream& out) {
  if (o.workers < 1 || o.clients < 1 || o.batches < 0 || o.tokens < 1)
    throw std::invalid_argument("demo: workers, clients and tokens must be >= 1 and batches >= 0");
  std::unique_ptr<LocalCluster> cluster;
  std::string coordinator = o.cluster;
  std::future<Reference> reference_future;
  const auto ready_start = Clock::now();
  if (o.cluster.empty()) {
    ModelRef ref;
    ref.model_dir = o.model_dir;
    ref.synthetic = o.model_dir.empty() ? o.synthetic : "";
    ref.synthetic_seed = o.seed;
    cluster = start_local_cluster(o, ref, out);
    // The reference loads while the cluster comes up.
    reference_future = std::async(std::launch::async, [ref] { return load_reference(ref); });
    coordinator = cluster->coordinator_address();
    const uint64_t epoch = cluster->wait_ready(std::chrono::seconds(o.ready_timeout_s));
    out << "demo: cluster at " << coordinator << " ready in " << std::fixed << std::setprecision(1)
        << std::chrono::duration<double>(Clock::now() - ready_start).count() << " s: epoch " << epoch << ", "
        << o.workers << " workers active" << std::endl;
  } else {
    out << "demo: waiting for the cluster at " << coordinator << " to serve" << std::endl;
    const uint64_t epoch = wait_for_active_workers(coordinator, 1, std::chrono::seconds(o.ready_timeout_s), {},
                                                   make_tls(o.transport), o.cluster_token);
    out << "demo: cluster at " << coordinator << " serving in " << std::fixed << std::setprecision(1)
        << std::chrono::duration<double>(Clock::now() - ready_start).count() << " s: epoch " << epoch << std::endl;
  }
  std::unique_ptr<MetricsEndpoint> metrics;
  ClusterClientOptions client_options;
  client_options.wire_dtype = parse_wire_dtype(o.wire_dtype);
  client_options.cluster_token = o.cluster_token;
  client_options.tls = make_tls(o.transport);
  if (o.metrics_port != 0) {
    metrics = std::make_unique<MetricsEndpoint>(o.metrics_host, o.metrics_port, "client", "none");
    client_options.registry = &metrics->registry();
    out << "demo: client metrics on http://" << o.metrics_host << ":" << metrics->port() << "/metrics" << std::endl;
  }
  auto client = std::make_unique<ClusterClient>(coordinator, client_options);
  auto [source, reference] =
      cluster ? reference_future.get() : reference_for_running_cluster(o, *client, out);
  const ModelSpec& spec = client->spec();
  SkewedInputs inputs(*source, o.skew, o.zipf, o.seed + 1);

  Tally tally;
  std::atomic<int> next_batch{0};
  const auto start = Clock::now();
  std::atomic<bool> finished{false};
  std::mutex report_mutex;
  std::condition_variable report_wake;
  std::thread reporter([&] {
    std::unique_lock lock(report_mutex);
    while (!report_wake.wait_for(lock, std::chrono::seconds(1), [&] { return finished.load(); })) {
      print_running(out, tally, *client, o.batches, std::chrono::duration<double>(Clock::now() - start).count());
    }
  });
  std::vector<std::thread> clients;
  for (int c = 0; c < o.clients; ++c) {
    clients.emplace_back([&] {
      for (int b; (b = next_batch++) < o.batches;) {
        const int32_t layer = spec.moe_layers[b % spec.moe_layers.size()];
        Matrix x = inputs.make(layer, o.tokens, o.seed * 1000003 + b);
        const auto t0 = Clock::now();
        try {
          Matrix got = client->forward(layer, x);
          const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
          const double err = max_row_relative_error(got, reference->forward(layer, x));
          std::lock_guard lock(tally.mutex);
          tally.latencies_ms.push_back(ms);
          tally.tokens += o.tokens;
          if (!(err <= o.max_relative_error)) {
            ++tally.mismatches;
            std::ostringstream what;
            what << "batch " << b << " (layer " << layer << "): relative error " << err << " > " << o.max_relative_error;
            tally.problem(what.str());
          }
        } catch (const std::exception& e) {
          std::lock_guard lock(tally.mutex);
          ++tally.errors;
          tally.problem("batch " + std::to_string(b) + " (layer " + std::to_string(layer) + "): " + e.what());
        }
        std::lock_guard lock(tally.mutex);
        ++tally.done;
      }
    });
  }
  for (auto& t : clients) t.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  {
    std::lock_guard lock(report_mutex);
    finished = true;
  }
  report_wake.notify_all();
  reporter.join();

  // Closing summary.
  ClientStats stats = client->stats();
  auto placement = client->placement();
  out << "demo: done: " << tally.done << " batches, " << tally.tokens << " tokens in " << std::setprecision(2) << seconds
      << " s = " << std::setprecision(0) << (seconds > 0 ? tally.tokens / seconds : 0) << " tokens/s; latency p50 "
      << std::setprecision(2) << percentile(tally.latencies_ms, 0.5) << " ms, p99 " << percentile(tally.latencies_ms, 0.99)
      << " ms; retries " << stats.retries << "; epoch " << placement->epoch() << "; mismatches " << tally.mismatches
      << "; errors " << tally.errors << std::endl;
  out << "demo: tokens per worker:";
  for (const auto& [worker, tokens] : stats.tokens_per_worker) {
    const PlacedWorker* placed = placement->table().find_worker(worker);
    out << "  " << worker << " (" << (placed == nullptr ? "?" : placed->address) << ") " << tokens;
  }
  out << std::endl;
  int32_t last_layer = -1;
  for (const auto& [key, pairs] : stats.tokens_per_expert) {
    if (key.layer != last_layer) {
      if (last_layer >= 0) out << "\n";
      out << "demo: tokens per expert, layer " << key.layer << ":";
      last_layer = key.layer;
    }
    out << "  " << (key.expert == spec.shared_expert_id() && spec.has_shared_expert ? "shared" : std::to_string(key.expert))
        << "=" << pairs;
  }
  if (last_layer >= 0) out << std::endl;
  for (const auto& p : tally.problems) out << "demo: problem: " << p << std::endl;

  client.reset();
  if (cluster) {
    cluster->stop();
    out << "demo: cluster stopped; ";
  } else {
    out << "demo: the cluster at " << coordinator << " keeps running; ";
  }
  out << (tally.errors == 0 && tally.mismatches == 0 ? "PASS" : "FAIL") << std::endl;
  return tally.errors == 0 && tally.mismatches == 0 && tally.done == o.batches ? 0 : 1;
}

}  // namespace moe::cli
