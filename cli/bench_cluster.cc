// bench cluster: launch, time LocalEngine and the cluster per T, measure the socket ceiling, print.
#include "cli/bench_cluster.h"
#include "cli/random_tokens.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <random>
#include <thread>
#include <unistd.h>

#include "cli/cluster_executor.h"
#include "kernels/expert_backend.h"
#include "runtime/client/local_cluster.h"
#include "runtime/engine/local_engine.h"
#include "runtime/model/synthetic_model.h"
#include "runtime/net/dev_certs.h"
#include "runtime/net/loopback_ceiling.h"

namespace moe {

namespace {

using Clock = std::chrono::steady_clock;




LocalClusterOptions cluster_options(const BenchClusterOptions& o, const std::string& preset) {
  LocalClusterOptions c;
  c.bin_dir = o.bin_dir.empty() ? executable_dir() : o.bin_dir;
  c.workers = o.workers;
  c.model = "synthetic:" + preset + ":0";
  c.log_dir = (std::filesystem::temp_directory_path() / ("moe-bench-cluster-" + std::to_string(getpid()))).string();
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  c.worker_threads = std::max(1, cores / o.workers);
  return c;
}

struct Row {
  int64_t tokens = 0;
  double local_ms = 0, cluster_ms = 0;
  double bytes_per_call = 0;
  double moved_per_s = 0, ceiling_per_s = 0;
};

const char* verdict(bool ok) { return ok ? "ok" : "MISSED"; }

}  // namespace

// One warm-up call, then calls until min_seconds have passed (min_reps .. max_reps); median ms per call.
Timing time_calls(const BenchClusterOptions& o, const std::function<void()>& call) {
  call();
  std::vector<double> ms;
  const auto start = Clock::now();
  while (static_cast<int>(ms.size()) < o.max_reps &&
         (static_cast<int>(ms.size()) < o.min_reps ||
          std::chrono::duration<double>(Clock::now() - start).count() < o.min_seconds)) {
    const auto t0 = Clock::now();
    call();
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return {ms[ms.size() / 2], static_cast<int>(ms.size())};
}

namespace {

// Times LocalEngine and the cluster on `preset` for every T; `worker_args` go to each moe-worker.
std::vector<Row> measure(const BenchClusterOptions& o, const std::string& preset, const std::vector<int64_t>& tokens,
                         const std::vector<std::string>& worker_args, bool with_ceiling, ModelSpec& spec,
                         const TlsFiles* tls = nullptr) {
  LocalClusterOptions options = cluster_options(o, preset);
  options.worker_args = worker_args;
  if (o.transport != "tcp") {
    options.worker_args.push_back("--transport");
    options.worker_args.push_back(o.transport);
  }
  if (tls) options.tls = *tls;
  LocalCluster cluster(options);
  auto source = SyntheticLayerSource::from_preset(preset);
  spec = source->spec();
  const int32_t layer = spec.moe_layers.front();
  LocalEngine local(*source, make_cpu_backend(0), LocalEngineOptions{{layer}});
  cluster.wait_ready(std::chrono::seconds(o.ready_timeout_s));
  auto client =
      cli::make_cluster_client(cluster.coordinator_address(), o.wire_dtype, std::chrono::seconds(60), o.cluster_token,
                               tls ? TlsContext::load(*tls) : nullptr, tls ? "tcp" : o.transport);
  std::vector<Row> rows;
  for (int64_t T : tokens) {
    Matrix x = random_tokens(T, spec.hidden_size, o.seed + T);
    Row row;
    row.tokens = T;
    row.local_ms = time_calls(o, [&] { local.forward(layer, x); }).median_ms;
    const ClientStats before = client->stats();
    row.cluster_ms = time_calls(o, [&] { client->forward(layer, x); }).median_ms;
    const ClientStats after = client->stats();
    row.bytes_per_call = double(after.payload_bytes - before.payload_bytes) / double(after.calls_ok - before.calls_ok);
    row.moved_per_s = row.bytes_per_call / (row.cluster_ms / 1e3);
    if (with_ceiling) {
      const size_t payload = std::max<size_t>(1, static_cast<size_t>(row.bytes_per_call));
      const int round_trips = static_cast<int>(std::clamp<size_t>((size_t(256) << 20) / payload, 20, 2000));
      row.ceiling_per_s = measure_loopback_ceiling(payload, round_trips).bytes_per_second();
    }
    rows.push_back(row);
  }
  client.reset();
  cluster.stop();
  return rows;
}

void print_table(std::ostream& out, const std::string& title, const std::vector<Row>& rows,
                 const std::string& transport) {
  // Over UCX (shared memory on one host) the bytes moved should reach twice the TCP socket's ceiling.
  const bool ucx = transport == "ucx";
  const double moved_target = ucx ? 200 : 50;
  out << title << " [forward path over " << transport << "]\n";
  out << std::right << std::setw(6) << "T" << std::setw(11) << "local ms" << std::setw(12) << "cluster ms"
      << std::setw(11) << "added ms" << std::setw(9) << "added%" << std::setw(11) << "KB/call" << std::setw(13)
      << "moved MB/s" << std::setw(14) << "ceiling MB/s" << std::setw(10) << "%ceiling"
      << "  targets (T>=256: moved>=" << moved_target << "% TCP ceiling, added<=20%)\n";
  for (const Row& r : rows) {
    const double added = r.cluster_ms - r.local_ms;
    const double added_pct = 100.0 * added / r.local_ms;
    const double ceiling_pct = 100.0 * r.moved_per_s / r.ceiling_per_s;
    out << std::fixed << std::setw(6) << r.tokens << std::setprecision(3) << std::setw(11) << r.local_ms
        << std::setw(12) << r.cluster_ms << std::setw(11) << added << std::setprecision(1) << std::setw(9) << added_pct
        << std::setw(11) << r.bytes_per_call / 1e3 << std::setw(13) << r.moved_per_s / 1e6 << std::setw(14)
        << r.ceiling_per_s / 1e6 << std::setw(10) << ceiling_pct;
    if (r.tokens >= 256) out << "  moved " << verdict(ceiling_pct >= moved_target) << ", added " << verdict(added_pct <= 20);
    out << "\n";
  }
}

// Cleartext and TLS rows of one model, measured in the same run, one row each per T.
void print_tls_table(std::ostream& out, const std::string& title, const std::vector<Row>& clear,
                     const std::vector<Row>& tls) {
  out << title << "\n";
  out << std::right << std::setw(6) << "T" << std::setw(11) << "transport" << std::setw(12) << "cluster ms"
      << std::setw(13) << "moved MB/s" << std::setw(14) << "TLS added ms" << std::setw(13) << "TLS added%\n";
  for (size_t i = 0; i < clear.size() && i < tls.size(); ++i) {
    for (const Row* r : {&clear[i], &tls[i]}) {
      out << std::fixed << std::setw(6) << r->tokens << std::setw(11) << (r == &clear[i] ? "cleartext" : "tls")
          << std::setprecision(3) << std::setw(12) << r->cluster_ms << std::setprecision(1) << std::setw(13)
          << r->moved_per_s / 1e6;
      if (r == &tls[i]) {
        const double added = tls[i].cluster_ms - clear[i].cluster_ms;
        out << std::setprecision(3) << std::setw(14) << added << std::setprecision(1) << std::setw(12)
            << 100.0 * added / clear[i].cluster_ms;
      }
      out << "\n";
    }
  }
}

std::string describe(const std::string& preset, const ModelSpec& spec) {
  return "'" + preset + "' (hidden " + std::to_string(spec.hidden_size) + ", intermediate " +
         std::to_string(spec.moe_intermediate_size) + ", " + std::to_string(spec.num_experts) + " experts, top-" +
         std::to_string(spec.top_k) + ")";
}

}  // namespace

int run_bench_cluster(const BenchClusterOptions& o, std::ostream& out) {
  if (o.transport != "tcp" && o.transport != "ucx")
    throw std::invalid_argument("bench cluster: --transport must be tcp or ucx, got '" + o.transport + "'");
  if (o.workers < 1) throw std::invalid_argument("bench cluster: --workers must be >= 1, got " + std::to_string(o.workers));
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  ModelSpec spec, trivial_spec, unbatched_spec;
  const std::vector<Row> main_rows = measure(o, o.synthetic, o.tokens, {}, true, spec);
  const std::vector<Row> trivial_rows = measure(o, o.trivial, o.tokens, {}, true, trivial_spec);
  const std::vector<Row> unbatched = measure(o, o.trivial, {1}, {"--batch-wait-us", "0"}, false, unbatched_spec);

  out << "bench cluster: 1 coordinator + " << o.workers << " workers on 127.0.0.1 vs LocalEngine in this process, "
      << cores << " cores, " << o.wire_dtype << " on the wire, median ms per forward; ceiling = plain-socket "
      << "loopback round trips with the same payload bytes (tokens out + partial sums back)\n";
  print_table(out, "model " + describe(o.synthetic, spec) + ":", main_rows, o.transport);
  print_table(out, "trivial experts " + describe(o.trivial, trivial_spec) + " (transport-bound):", trivial_rows,
              o.transport);
  for (const Row& r : trivial_rows) {
    if (r.tokens != 1) continue;
    const double us = (r.cluster_ms - r.local_ms) * 1e3;
    out << std::fixed << std::setprecision(0) << "T=1, trivial experts, workers' default batching: added " << us
        << " us (target < 300 us: " << verdict(us < 300) << ")\n";
  }
  const double us = (unbatched[0].cluster_ms - unbatched[0].local_ms) * 1e3;
  out << std::fixed << std::setprecision(0) << "T=1, trivial experts, workers with --batch-wait-us 0: local "
      << std::setprecision(3) << unbatched[0].local_ms << " ms, cluster " << unbatched[0].cluster_ms << " ms, added "
      << std::setprecision(0) << us << " us (target < 300 us: " << verdict(us < 300) << ")\n";
  if (o.tls) {
    TlsFiles files = o.tls_files;
    if (files.cert.empty() && files.key.empty() && files.ca.empty()) {
      files = make_dev_certs(std::filesystem::temp_directory_path() / ("moe-bench-tls-" + std::to_string(getpid())));
    }
    ModelSpec tls_spec, tls_trivial_spec;
    const std::vector<Row> tls_main = measure(o, o.synthetic, o.tokens, {}, false, tls_spec, &files);
    const std::vector<Row> tls_trivial = measure(o, o.trivial, o.tokens, {}, false, tls_trivial_spec, &files);
    out << "mutual TLS on every connection (client, coordinator, workers) vs cleartext, measured in this run; "
        << "certificates " << files.cert << "\n";
    print_tls_table(out, "model " + describe(o.synthetic, spec) + ":", main_rows, tls_main);
    print_tls_table(out, "trivial experts " + describe(o.trivial, trivial_spec) + ":", trivial_rows, tls_trivial);
  }
  return 0;
}

}  // namespace moe
