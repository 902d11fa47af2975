// Flag definitions of moe-worker (see worker_flags.h).
#include "worker/worker_flags.h"

#include <CLI/CLI.hpp>

#include <stdexcept>

#include "runtime/net/address.h"
#include "runtime/net/transport_flags.h"
#include "runtime/wire/cluster_auth.h"

namespace moe {

void add_worker_flags(CLI::App& app, WorkerOptions& o) {
  app.add_option("--coordinator", o.coordinator, "moe-coordinator address HOST:PORT")
      ->required()
      ->envname("MOE_COORDINATOR");
  app.add_option("--listen", o.listen, "where to serve requests, HOST:PORT (port 0: a free port)")
      ->capture_default_str()
      ->envname("MOE_LISTEN");
  app.add_option("--backend", o.backend, "expert compute backend")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str()
      ->envname("MOE_BACKEND");
  app.add_option("--cuda-path", o.cuda_path,
                 "CUDA backend's expert kernels: auto (by rows per expert), streaming, tiles32, tiles64, tiles128 "
                 "or cublas")
      ->check(CLI::IsMember({"auto", "streaming", "tiles32", "tiles64", "tiles128", "cublas"}))
      ->capture_default_str()
      ->envname("MOE_CUDA_PATH");
  app.add_option("--threads", o.threads, "CPU backend threads (0: OpenBLAS default)")
      ->capture_default_str()
      ->envname("MOE_THREADS");
  app.add_option("--batch-threads", o.batch_threads, "batches computed at once (0: 2 on cpu, 1 on cuda)")
      ->capture_default_str()
      ->envname("MOE_BATCH_THREADS");
  app.add_option("--metrics-port", o.metrics_port, "Prometheus /metrics port on the listen host (0: off)")
      ->capture_default_str()
      ->envname("MOE_METRICS_PORT");
  app.add_flag("--metrics-open", o.metrics_open,
               "serve /metrics without the cluster token and over plain HTTP (by default, with a token a scrape "
               "must send 'Authorization: Bearer <token>', and with --tls it must use HTTPS with a certificate from "
               "the cluster CA); for networks that isolate the metrics port otherwise")
      ->envname("MOE_METRICS_OPEN");
  app.add_option("--name", o.name, "worker name shown by the coordinator (default: host name)")
      ->envname("MOE_NAME");
  app.add_option("--memory-bytes", o.memory_bytes, "weight memory offered (0: 80% of RAM / free GPU memory)")
      ->capture_default_str()
      ->envname("MOE_MEMORY_BYTES");
  app.add_option("--slots", o.slots, "expert copies offered (0: memory-bytes / largest expert)")
      ->capture_default_str()
      ->envname("MOE_SLOTS");
  auto* token = app.add_option("--cluster-token", o.cluster_token,
                               "the cluster's token: sent with every request this worker makes and required on every "
                               "request it serves (prefer --cluster-token-file: a flag shows in ps)")
                    ->envname("MOE_CLUSTER_TOKEN");
  app.add_option("--cluster-token-file", o.cluster_token_file, "file holding the cluster token (first line)")
      ->envname("MOE_CLUSTER_TOKEN_FILE")
      ->excludes(token);
  app.add_option("--max-queue", o.max_queue, "forward requests in flight (until each reply is written to its socket) before replying overloaded")
      ->capture_default_str()
      ->envname("MOE_MAX_QUEUE");
  app.add_option("--batch-wait-us", o.batch_wait_us, "how long a request waits for others of its layer to batch with")
      ->capture_default_str()
      ->envname("MOE_BATCH_WAIT_US");
  app.add_option("--max-batch-tokens", o.max_batch_tokens, "tokens one backend call takes at most")
      ->capture_default_str()
      ->envname("MOE_MAX_BATCH_TOKENS");
  app.add_flag("--no-shared-storage", o.no_shared_storage,
               "nodes do not share the checkpoint: stream gained experts from the workers that hold them (the "
               "first placement still reads the model source) and keep loaded weights to stream to others")
      ->envname("MOE_NO_SHARED_STORAGE");
  app.add_option("--fetch-timeout-ms", o.fetch_timeout_ms, "deadline of one streamed weight chunk")
      ->capture_default_str()
      ->envname("MOE_FETCH_TIMEOUT_MS");
  app.add_option("--max-frame-bytes", o.max_frame_bytes,
                 "largest request frame accepted from clients (clients split bigger calls to their own limit)")
      ->capture_default_str()
      ->envname("MOE_MAX_FRAME_BYTES");
  add_tls_flags(app, o.transport);
  add_server_bound_flags(app, o.transport);
  add_data_transport_flags(app, o.transport, true);
}

void check_worker_options(const WorkerOptions& o) {
  auto bad = [](const std::string& what) { throw std::invalid_argument(what); };
  try {
    parse_host_port(o.coordinator);
  } catch (const std::exception& e) {
    bad(std::string("--coordinator: ") + e.what());
  }
  try {
    parse_host_port(o.listen);
  } catch (const std::exception& e) {
    bad(std::string("--listen: ") + e.what());
  }
  if (o.backend != "cpu" && o.backend != "cuda") bad("--backend must be cpu or cuda, got '" + o.backend + "'");
  std::string token = o.cluster_token;  // from the flag or the file
  try {
    resolve_cluster_token(token, o.cluster_token_file);
  } catch (const std::exception& e) {
    bad(std::string("--cluster-token-file: ") + e.what());
  }
  if (o.max_queue == 0) bad("--max-queue must be at least 1, got 0");
  if (o.max_batch_tokens == 0) bad("--max-batch-tokens must be at least 1, got 0");
  if (o.fetch_timeout_ms == 0) bad("--fetch-timeout-ms must be at least 1, got 0");
  if (o.max_frame_bytes < 4096)
    bad("--max-frame-bytes must be at least 4096, got " + std::to_string(o.max_frame_bytes));
  check_token_transport(o.transport, token, "moe-worker");
  check_data_transport(o.transport);
}

}  // namespace moe
