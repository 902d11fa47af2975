// CLI11 flags of moe-coordinator, each with its MOE_* environment variable.
#include "coordinator/coordinator_flags.h"

#include <filesystem>

#include "coordinator/state_store.h"
#include "runtime/net/address.h"
#include "runtime/net/net_error.h"
#include "runtime/net/transport_flags.h"
#include "runtime/wire/cluster_auth.h"

namespace moe {

void add_coordinator_flags(CLI::App& app, CoordinatorConfig& config) {
  app.add_option("--listen", config.listen, "HOST:PORT to serve workers, clients and moectl on")
      ->envname("MOE_LISTEN")->capture_default_str();
  auto* model = app.add_option("--model", config.model.model_dir, "HF checkpoint folder (every node must read it)")
                    ->envname("MOE_MODEL");
  auto* synthetic = app.add_option("--synthetic", config.model.synthetic, "synthetic preset name (tiny, default, ...)")
                        ->envname("MOE_SYNTHETIC");
  model->excludes(synthetic);
  synthetic->excludes(model);
  app.add_option("--seed", config.model.synthetic_seed, "seed of the synthetic model")
      ->envname("MOE_SEED")->capture_default_str();
  app.add_option("--state-file", config.state_file, "JSON state file, written atomically on every change")
      ->envname("MOE_STATE_FILE");
  app.add_option("--replicas", config.replicas, "copies of every expert")
      ->envname("MOE_REPLICAS")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--metrics-port", config.metrics_port, "port of /metrics (0 = off)")
      ->envname("MOE_METRICS_PORT")->capture_default_str();
  app.add_flag("--metrics-open", config.metrics_open,
               "serve /metrics without the cluster token and over plain HTTP (by default, with a token a scrape "
               "must send 'Authorization: Bearer <token>', and with --tls it must use HTTPS with a certificate from "
               "the cluster CA); for networks that isolate the metrics port otherwise")
      ->envname("MOE_METRICS_OPEN");
  auto* token = app.add_option("--cluster-token", config.cluster_token,
                               "token every request (workers, clients, moectl) must carry; prefer "
                               "--cluster-token-file (a flag shows in ps)")
                    ->envname("MOE_CLUSTER_TOKEN");
  app.add_option("--cluster-token-file", config.cluster_token_file, "file holding the cluster token")
      ->envname("MOE_CLUSTER_TOKEN_FILE")
      ->excludes(token);
  app.add_option("--heartbeat-ms", config.heartbeat_ms, "heartbeat period told to workers")
      ->envname("MOE_HEARTBEAT_MS")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--lease-ms", config.lease_ms, "a worker without a heartbeat for this long is dead")
      ->envname("MOE_LEASE_MS")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--grace-ms", config.grace_ms, "time between commit and release of a placement change")
      ->envname("MOE_GRACE_MS")->capture_default_str();
  app.add_option("--min-workers", config.min_workers, "workers to wait for before the first placement")
      ->envname("MOE_MIN_WORKERS")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--prepare-timeout-ms", config.prepare_timeout_ms, "how long workers may take to load experts")
      ->envname("MOE_PREPARE_TIMEOUT_MS")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--rpc-timeout-ms", config.rpc_timeout_ms, "deadline of connect, commit and release")
      ->envname("MOE_RPC_TIMEOUT_MS")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--rebalance-threshold", config.rebalance_threshold,
                 "rebalance on its own when a layer's expected max/mean worker load passes this (0 = off)")
      ->envname("MOE_REBALANCE_THRESHOLD")->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--rebalance-interval-ms", config.rebalance_interval_ms, "period of the imbalance check")
      ->envname("MOE_REBALANCE_INTERVAL_MS")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--replica-budget", config.replica_budget,
                 "expert copies per expert a rebalance may use on average (spare ones replicate hot experts)")
      ->envname("MOE_REPLICA_BUDGET")->capture_default_str()->check(CLI::Range(1.0, 64.0));
  app.add_option("--load-ewma-alpha", config.load_ewma_alpha, "weight of the newest heartbeat in the load estimates")
      ->envname("MOE_LOAD_EWMA_ALPHA")->capture_default_str()->check(CLI::Range(0.01, 1.0));
  app.add_option("--dead-worker-ttl-ms", config.dead_worker_ttl_ms,
                 "a dead worker leaves status and metrics this long after its death")
      ->envname("MOE_DEAD_WORKER_TTL_MS")->capture_default_str();
  app.add_option("--adopt-wait-ms", config.adopt_wait_ms,
                 "on start, how long to wait for workers' reports to cover the model before adopting what they "
                 "hold and placing the rest (0 = the lease)")
      ->envname("MOE_ADOPT_WAIT_MS")->capture_default_str();
  app.add_flag("--no-shared-storage", config.no_shared_storage,
               "nodes do not share the checkpoint: a prepare names the workers that hold each gained expert, "
               "so workers (also run with --no-shared-storage) stream weights from each other")
      ->envname("MOE_NO_SHARED_STORAGE");
  app.add_flag("--no-layerwise-update", config.no_layerwise,
               "update-weights only ever loads the new version of every expert at once: when a worker's memory "
               "cannot hold both versions the update is refused instead of rolled out layer by layer")
      ->envname("MOE_NO_LAYERWISE_UPDATE");
  app.add_flag("--deterministic", config.deterministic,
               "every token's MoE output the same bits whatever its batch, worker, replica or placement "
               "(told to clients in modelInfo; costs some speed, see README)")
      ->envname("MOE_DETERMINISTIC");
  add_tls_flags(app, config.transport);
  add_server_bound_flags(app, config.transport);
}

void finish_coordinator_config(CoordinatorConfig& config) {
  if (config.model.model_dir.empty() && config.model.synthetic.empty()) {
    throw CLI::ValidationError("--model/--synthetic", "give the model: --model DIR or --synthetic NAME");
  }
  if (!config.model.model_dir.empty()) {
    config.model.model_dir = std::filesystem::absolute(config.model.model_dir).lexically_normal().string();
  }
  if (config.lease_ms <= config.heartbeat_ms) {
    throw CLI::ValidationError("--lease-ms", "lease " + std::to_string(config.lease_ms) +
                                                 " ms must be longer than the heartbeat " +
                                                 std::to_string(config.heartbeat_ms) + " ms");
  }
  try {
    resolve_cluster_token(config.cluster_token, config.cluster_token_file);
  } catch (const std::exception& e) {
    throw CLI::ValidationError("--cluster-token-file", e.what());
  }
  try {
    parse_host_port(config.listen);
  } catch (const NetError& e) {
    throw CLI::ValidationError("--listen", e.what());
  }
  try {
    check_token_transport(config.transport, config.cluster_token, "moe-coordinator");
  } catch (const std::invalid_argument& e) {
    throw CLI::ValidationError("--cluster-token", e.what());
  }
  if (!config.state_file.empty()) {
    try {
      check_state_file_writable(config.state_file);
    } catch (const std::exception& e) {
      throw CLI::ValidationError("--state-file", e.what());
    }
  }
}

}  // namespace moe
