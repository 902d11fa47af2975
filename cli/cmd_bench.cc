// `moectl bench ...`: benchmarks that print each figure beside its ceiling and peer, measured in one run.
#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>
#include <sstream>
#include <string>

#include "cli/bench_balance.h"
#include "cli/bench_determinism.h"
#include "cli/bench_engine.h"
#include "cli/bench_faults.h"
#include "cli/commands.h"

namespace moe::cli {

namespace {

// "1024,3584,8,2" -> hidden, intermediate, experts, top-k.
void parse_shape(const std::string& text, BenchEngineOptions& o) {
  std::stringstream ss(text);
  std::string part;
  std::vector<int64_t> v;
  while (std::getline(ss, part, ',')) {
    try {
      v.push_back(std::stoll(part));
    } catch (const std::exception&) {
      throw CLI::ValidationError("--shape", "'" + text + "' is not hidden,intermediate,experts,topk");
    }
  }
  if (v.size() != 4 || v[0] <= 0 || v[1] <= 0 || v[2] <= 0 || v[3] <= 0 || v[3] > v[2])
    throw CLI::ValidationError("--shape", "'" + text + "' is not hidden,intermediate,experts,topk (positive, topk <= experts)");
  o.hidden = v[0];
  o.intermediate = v[1];
  o.experts = static_cast<int>(v[2]);
  o.top_k = static_cast<int>(v[3]);
}

void register_bench_engine(CLI::App& bench, Action& action) {
  auto opts = std::make_shared<BenchEngineOptions>();
  auto shape = std::make_shared<std::string>();
  CLI::App* cmd = bench.add_subcommand(
      "engine", "One MoE layer through the CPU backend (f32 and bf16 weights) vs the PyTorch peer, same run");
  cmd->add_option("--shape", *shape, "hidden,intermediate,experts,topk (default: the embedded default 1024,3584,8,2)");
  cmd->add_option("--tokens", opts->tokens, "token counts T to measure")->delimiter(',');
  cmd->add_option("--threads", opts->threads, "CPU threads (0: all cores)");
  cmd->add_option("--min-seconds", opts->min_seconds, "time spent per figure")->check(CLI::PositiveNumber);
  cmd->add_option("--seed", opts->seed, "seed of the synthetic weights and inputs");
  auto dtypes = std::make_shared<std::vector<std::string>>();
  cmd->add_option("--dtypes", *dtypes, "expert weight dtypes: f32,bf16 (default both)")->delimiter(',')->envname("MOE_DTYPES");
  auto kernel = std::make_shared<std::string>("auto");
  cmd->add_option("--kernel", *kernel, "CPU kernel: auto, amx, avx512bf16 or blas")->capture_default_str()->envname("MOE_CPU_KERNEL");
  cmd->add_option("--pairs", opts->pairs, "ABAB pairs of ours and the peer per row")
      ->check(CLI::Range(1, 99))->capture_default_str()->envname("MOE_PAIRS");
  cmd->add_flag("!--no-peer", opts->peer, "do not run the PyTorch peer")->envname("MOE_PEER");
  cmd->add_option("--peer-python", opts->peer_python, "python with torch (default: <source>/.venv/bin/python)")
      ->envname("MOE_PEER_PYTHON");
  cmd->add_option("--peer-script", opts->peer_script, "the peer script (default: <source>/tools/torch_cpu_moe_peer.py)")
      ->envname("MOE_PEER_SCRIPT");
  cmd->add_flag("!--no-blas-reference", opts->blas_reference, "skip timing kernel blas on the f32 weights")
      ->envname("MOE_BLAS_REFERENCE");
  auto deterministic = std::make_shared<bool>(false);
  cmd->add_flag("--deterministic", *deterministic,
                "instead: the deterministic mode's cost, LocalEngine default vs --deterministic, same run")
      ->envname("MOE_DETERMINISTIC");
  cmd->callback([opts, shape, dtypes, kernel, deterministic, &action] {
    if (!shape->empty()) parse_shape(*shape, *opts);
    if (!dtypes->empty()) {
      opts->dtypes.clear();
      for (const std::string& d : *dtypes) {
        if (d == "f32") opts->dtypes.push_back(DType::F32);
        else if (d == "bf16") opts->dtypes.push_back(DType::BF16);
        else throw CLI::ValidationError("--dtypes", "'" + d + "' is not f32 or bf16");
      }
    }
    try {
      opts->kernel = parse_cpu_kernel(*kernel);
    } catch (const std::invalid_argument& e) {
      throw CLI::ValidationError("--kernel", e.what());
    }
    if (*deterministic) {
      action = [opts] { return run_bench_engine_determinism(*opts, std::cout); };
      return;
    }
    action = [opts] { return run_bench_engine(*opts, std::cout); };
  });
}

}  // namespace

void register_bench_balance(CLI::App& bench, Action& action) {
  auto o = std::make_shared<BenchBalanceOptions>();
  CLI::App* cmd = bench.add_subcommand(
      "balance", "The load balancer vs a contiguous placement: imbalance, slots changed, planning time");
  cmd->add_option("--layers", o->layers, "MoE layers")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--experts", o->experts, "routed experts per layer")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--workers", o->workers, "workers")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--slots", o->slots, "expert slots per worker per layer")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--zipf", o->zipf, "Zipf exponent s of the generated loads")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--load-file", o->load_file, "CSV or JSON matrix of loads, layers x experts (replaces --zipf)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--drift", o->drift, "second window: each load times 1 + U(-drift, drift)")
      ->check(CLI::Range(0.0, 1.0))->capture_default_str();
  cmd->add_option("--seed", o->seed, "seed of the expert ranks and the drift")->capture_default_str();
  cmd->add_option("--eplb-groups", o->eplb_groups, "EPLB baseline: expert groups (hierarchical)")
      ->check(CLI::PositiveNumber)->capture_default_str()->envname("MOE_EPLB_GROUPS");
  cmd->add_option("--eplb-nodes", o->eplb_nodes, "EPLB baseline: nodes (0: workers / 8 when it divides, else 1)")
      ->check(CLI::NonNegativeNumber)->capture_default_str()->envname("MOE_EPLB_NODES");
  cmd->add_option("--pairs", o->pairs, "planning time: runs of ours and EPLB, alternated")
      ->check(CLI::Range(1, 99))->capture_default_str()->envname("MOE_PAIRS");
  cmd->callback([o, &action] { action = [o] { return run_bench_balance(*o, std::cout); }; });
}

void register_bench_faults(CLI::App& bench, Action& action) {
  auto o = std::make_shared<BenchFaultsOptions>();
  CLI::App* cmd = bench.add_subcommand(
      "faults", "Fault types one after another under checked load: calls failed, longest interruption, time to full "
                "service, wrong answers, targets");
  cmd->add_option("--seconds", o->seconds, "load after each fault is over")
      ->check(CLI::PositiveNumber)->capture_default_str()->envname("MOE_SECONDS");
  cmd->add_option("--workers", o->workers, "moe-worker processes (>= 2)")
      ->check(CLI::Range(2, 64))->capture_default_str()->envname("MOE_WORKERS");
  cmd->add_option("--threads", o->threads, "client threads")
      ->check(CLI::Range(1, 64))->capture_default_str()->envname("MOE_THREADS");
  cmd->add_option("--deadline-ms", o->deadline_ms, "deadline of each forward call")
      ->check(CLI::PositiveNumber)->capture_default_str()->envname("MOE_DEADLINE_MS");
  cmd->add_option("--lease-ms", o->lease_ms, "the coordinator's --lease-ms")
      ->check(CLI::PositiveNumber)->capture_default_str()->envname("MOE_LEASE_MS");
  cmd->add_option("--heartbeat-ms", o->heartbeat_ms, "the coordinator's --heartbeat-ms")
      ->check(CLI::PositiveNumber)->capture_default_str()->envname("MOE_HEARTBEAT_MS");
  cmd->add_option("--synthetic", o->synthetic, "synthetic preset served")->capture_default_str()->envname("MOE_SYNTHETIC");
  cmd->add_option("--only", o->only, "run only the fault types whose name contains this text")->envname("MOE_ONLY");
  cmd->add_option("--bin-dir", o->bin_dir, "folder of moe-coordinator and moe-worker (default: next to moectl)")
      ->envname("MOE_BIN_DIR");
  cmd->callback([o, &action] { action = [o] { return run_bench_faults(*o, std::cout); }; });
}

void register_bench(CLI::App& app, Action& action) {
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks: each figure beside its peer and ceiling");
  bench->require_subcommand(1);
  register_bench_engine(*bench, action);
  register_bench_cluster(*bench, action);
  register_bench_balance(*bench, action);
  register_bench_faults(*bench, action);
}

}  // namespace moe::cli
