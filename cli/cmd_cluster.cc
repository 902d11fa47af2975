// The cluster subcommands of moectl: `status --cluster HOST:PORT`, `rebalance`, `drain`, `update-weights`, `demo`, and
// `bench cluster` (registered under `bench` by cmd_bench.cc).
#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>

#include "cli/bench_cluster.h"
#include "cli/bench_determinism.h"
#include "cli/cluster_admin.h"
#include "cli/cluster_demo.h"
#include "cli/cluster_token_flag.h"
#include "cli/cluster_status.h"
#include "cli/commands.h"
#include "runtime/net/transport_flags.h"

namespace moe::cli {

namespace {

void register_status(CLI::App& app, Action& action) {
  auto cluster = std::make_shared<std::string>();
  auto timeout_ms = std::make_shared<int>(3000);
  auto token = std::make_shared<std::string>();
  auto transport = std::make_shared<TransportOptions>();
  CLI::App* cmd = app.add_subcommand("status", "Workers, their state, address, experts and lease; the epoch");
  add_tls_flags(*cmd, *transport);
  cmd->add_option("--cluster", *cluster, "coordinator HOST:PORT")->required()->envname("MOE_CLUSTER");
  add_cluster_token_flag(cmd, *token);
  cmd->add_option("--timeout-ms", *timeout_ms, "give up when the coordinator does not answer within this")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->callback([cluster, timeout_ms, token, transport, &action] {
    action = [cluster, timeout_ms, token, transport] {
      return run_cluster_status(*cluster, std::chrono::milliseconds(*timeout_ms), std::cout, make_tls(*transport),
                                *token);
    };
  });
}

void add_admin_flags(CLI::App* cmd, AdminOptions& o) {
  cmd->add_option("--cluster", o.cluster, "coordinator HOST:PORT")->required()->envname("MOE_CLUSTER");
  add_cluster_token_flag(cmd, o.cluster_token);
  add_tls_flags(*cmd, o.transport);
  cmd->add_option("--timeout-ms", o.timeout_ms, "give up when the change is not committed within this")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
}

void register_rebalance(CLI::App& app, Action& action) {
  auto o = std::make_shared<AdminOptions>();
  auto dry_run = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand("rebalance", "Rebalance the experts over the workers by their load, live");
  add_admin_flags(cmd, *o);
  cmd->add_flag("--dry-run", *dry_run, "only report what would move");
  cmd->callback([o, dry_run, &action] { action = [o, dry_run] { return run_rebalance(*o, *dry_run, std::cout); }; });
}

void register_drain(CLI::App& app, Action& action) {
  auto o = std::make_shared<AdminOptions>();
  auto worker = std::make_shared<uint32_t>(0);
  CLI::App* cmd = app.add_subcommand("drain", "Move every expert off a worker, after which it exits");
  add_admin_flags(cmd, *o);
  cmd->add_option("WORKER_ID", *worker, "the worker's id (moectl status)")->required();
  cmd->callback([o, worker, &action] { action = [o, worker] { return run_drain(*o, *worker, std::cout); }; });
}

void register_update_weights(CLI::App& app, Action& action) {
  auto o = std::make_shared<AdminOptions>();
  o->timeout_ms = 600000;  // every worker loads all its experts again
  auto model = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand(
      "update-weights",
      "Serve a new checkpoint of the same family and shapes, live: loaded beside the old one, switched in one "
      "epoch, no call fails or mixes versions");
  add_admin_flags(cmd, *o);
  cmd->add_option("--model", *model, "the new HF checkpoint folder (the coordinator and the workers read it)")
      ->required()
      ->envname("MOE_MODEL");
  cmd->callback([o, model, &action] { action = [o, model] { return run_update_weights(*o, *model, std::cout); }; });
}

void register_demo(CLI::App& app, Action& action) {
  auto o = std::make_shared<DemoOptions>();
  CLI::App* cmd = app.add_subcommand(
      "demo",
      "Start a loopback cluster (coordinator + workers), or use a running one (--cluster), drive skewed batches, "
      "check each against LocalEngine");
  auto* cluster = cmd->add_option("--cluster", o->cluster,
                                  "drive this running cluster's coordinator HOST:PORT instead of starting one (its "
                                  "model source must be readable here); it keeps running afterwards");
  auto* workers =
      cmd->add_option("--workers", o->workers, "moe-worker processes")->check(CLI::PositiveNumber)->capture_default_str();
  auto* model = cmd->add_option("--model", o->model_dir, "HF checkpoint folder (default: the synthetic preset)");
  auto* synth = cmd->add_option("--synthetic", o->synthetic, "synthetic preset")->capture_default_str();
  model->excludes(synth);
  cmd->add_option("--seed", o->seed, "seed of the synthetic model and the inputs")->capture_default_str();
  cmd->add_option("--batches", o->batches, "batches to send in all")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--clients", o->clients, "client threads")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--tokens", o->tokens, "tokens per batch")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--wire-dtype", o->wire_dtype, "dtype of tokens on the wire")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();
  cmd->add_option("--skew", o->skew, "weight of the hot expert's router row in each token")->capture_default_str();
  cmd->add_option("--zipf", o->zipf, "Zipf exponent of the hot-expert draw")->capture_default_str();
  cmd->add_option("--max-error", o->max_relative_error, "per-row relative error allowed against LocalEngine")
      ->capture_default_str();
  auto* worker_threads =
      cmd->add_option("--worker-threads", o->worker_threads, "CPU threads per worker (0: cores / workers)");
  cmd->add_option("--ready-timeout-s", o->ready_timeout_s, "how long the cluster may take to come up")
      ->capture_default_str();
  auto* bin_dir =
      cmd->add_option("--bin-dir", o->bin_dir, "folder of moe-coordinator and moe-worker (default: next to moectl)");
  auto* log_dir = cmd->add_option("--log-dir", o->log_dir, "where the daemons' stderr goes (default: a folder under /tmp)");
  cmd->add_option("--metrics-port", o->metrics_port, "serve the client's /metrics on --metrics-host:PORT (0: off)")
      ->capture_default_str();
  cmd->add_option("--metrics-host", o->metrics_host,
                  "address the client's /metrics listens on (0.0.0.0: reachable from other hosts or containers)")
      ->capture_default_str();
  add_cluster_token_flag(cmd, o->cluster_token);
  add_tls_flags(*cmd, o->transport);
  for (CLI::Option* started_only : {workers, model, synth, worker_threads, bin_dir, log_dir}) {
    cluster->excludes(started_only);
  }
  cmd->callback([o, &action] { action = [o] { return run_demo(*o, std::cout); }; });
}

}  // namespace

void register_cluster_commands(CLI::App& app, Action& action) {
  register_status(app, action);
  register_rebalance(app, action);
  register_drain(app, action);
  register_update_weights(app, action);
  register_demo(app, action);
}

void register_bench_cluster(CLI::App& bench, Action& action) {
  auto o = std::make_shared<BenchClusterOptions>();
  CLI::App* cmd = bench.add_subcommand(
      "cluster", "A loopback cluster vs LocalEngine: ms per forward, added latency, bytes moved vs the socket ceiling");
  cmd->add_option("--workers", o->workers, "moe-worker processes")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--synthetic", o->synthetic, "synthetic preset of the main figures")->capture_default_str();
  cmd->add_option("--trivial", o->trivial, "synthetic preset with a trivial expert size, for the T=1 latency")
      ->capture_default_str();
  cmd->add_option("--tokens", o->tokens, "token counts T")->delimiter(',');
  cmd->add_option("--min-seconds", o->min_seconds, "time spent per figure")->check(CLI::PositiveNumber);
  cmd->add_option("--wire-dtype", o->wire_dtype, "dtype of tokens on the wire")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();
  cmd->add_option("--bin-dir", o->bin_dir, "folder of moe-coordinator and moe-worker (default: next to moectl)");
  add_cluster_token_flag(cmd, o->cluster_token);
  cmd->add_option("--transport", o->transport,
                  "forward path over tcp or ucx (workers started with --transport ucx; the ceiling stays the plain "
                  "TCP socket's, measured in the same run; --tls rows stay on TCP)")
      ->check(CLI::IsMember({"tcp", "ucx"}))
      ->capture_default_str()
      ->envname("MOE_TRANSPORT");
  cmd->add_flag("--tls", o->tls,
                "also measure the cluster with mutual TLS on every connection, beside cleartext in the same run "
                "(certificates: --tls-cert/--tls-key/--tls-ca, else a development set made for the run)");
  cmd->add_option("--tls-cert", o->tls_files.cert, "PEM certificate for every daemon and the client")->envname("MOE_TLS_CERT");
  cmd->add_option("--tls-key", o->tls_files.key, "PEM key of --tls-cert")->envname("MOE_TLS_KEY");
  cmd->add_option("--tls-ca", o->tls_files.ca, "PEM CA that signed --tls-cert")->envname("MOE_TLS_CA");
  cmd->add_flag("--deterministic", o->deterministic,
                "instead: the deterministic mode's cost, a default and a --deterministic cluster timed alternately "
                "in the same run")
      ->envname("MOE_DETERMINISTIC");
  cmd->add_option("--pairs", o->pairs, "--deterministic: ABAB pairs per T")->check(CLI::Range(1, 99))->capture_default_str();
  cmd->callback([o, &action] {
    action = [o] { return o->deterministic ? run_bench_cluster_determinism(*o, std::cout) : run_bench_cluster(*o, std::cout); };
  });
}

}  // namespace moe::cli
