// `moectl forward`: one MoE layer's forward on a safetensors input, in this process (--model/--synthetic)
// or through a running cluster (--cluster HOST:PORT). Output contract: see hidden_states_io.h.
#include <CLI/CLI.hpp>

#include <chrono>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/cluster_executor.h"
#include "cli/cluster_token_flag.h"
#include "cli/commands.h"
#include "cli/hidden_states_io.h"
#include "kernels/expert_backend.h"
#include "runtime/engine/local_engine.h"
#include "runtime/model/layer_source_factory.h"
#include "runtime/model/model_error.h"
#include "runtime/net/transport_flags.h"

namespace moe::cli {

namespace {

struct ForwardOptions {
  ModelRef model;
  int32_t layer = -1;
  std::string input;
  std::string output;
  std::string routing_out;
  int threads = 0;
  std::string cluster;            // coordinator HOST:PORT; wins over the local model
  std::vector<std::string> workers;  // asked for model and placement when the coordinator does not answer
  uint64_t max_frame_bytes = 64u << 20;
  int request_timeout_ms = 3000;
  std::string wire_dtype = "bf16";
  std::string cluster_token;      // sent with the forwards (--cluster-token / MOE_CLUSTER_TOKEN)
  int deadline_ms = 10000;
  TransportOptions transport;     // --tls* flags
  std::string dequant_dtype = "f32";  // what FP8/MXFP4 expert weights are dequantized to (--model)
  bool deterministic = false;     // --model/--synthetic: the local engine's deterministic mode
};

int run_forward(const ForwardOptions& o) {
  std::unique_ptr<MoeLayerExecutor> executor;
  if (!o.cluster.empty() || !o.workers.empty()) {
    ClusterClientFlags flags;
    flags.endpoints = {o.cluster, o.workers};
    flags.wire_dtype = o.wire_dtype;
    flags.deadline = std::chrono::milliseconds(o.deadline_ms);
    flags.request_timeout = std::chrono::milliseconds(o.request_timeout_ms);
    flags.cluster_token = o.cluster_token;
    flags.max_frame_bytes = o.max_frame_bytes;
    flags.tls = make_tls(o.transport);
    check_data_transport(o.transport);
    flags.transport = o.transport.data_transport;
    executor = make_cluster_client(flags);
  } else {
    std::unique_ptr<LayerSource> source =
        open_layer_source(o.model, o.dequant_dtype == "bf16" ? DType::BF16 : DType::F32);
    source->spec().require_moe_layer(o.layer);
    LocalEngineOptions engine_options;
    engine_options.layers = {o.layer};
    engine_options.deterministic = o.deterministic;
    executor = std::make_unique<LocalEngine>(*source, make_cpu_backend(o.threads), engine_options);
  }
  executor->spec().require_moe_layer(o.layer);
  Matrix x = read_hidden_states(o.input, executor->spec().hidden_size);
  RoutingResult routing;
  Matrix y = executor->forward(o.layer, x, o.routing_out.empty() ? nullptr : &routing);
  write_hidden_states(o.output, y);
  if (!o.routing_out.empty()) write_routing(o.routing_out, routing);
  std::cerr << "moectl forward: layer " << o.layer << ", " << x.rows << " tokens -> " << o.output << "\n";
  return 0;
}

}  // namespace

void register_forward(CLI::App& app, Action& action) {
  auto opts = std::make_shared<ForwardOptions>();
  CLI::App* cmd = app.add_subcommand("forward", "Run one MoE layer on hidden_states from a safetensors file");
  auto* model = cmd->add_option("--model", opts->model.model_dir, "HF checkpoint folder (config.json + safetensors)");
  auto* synth = cmd->add_option("--synthetic", opts->model.synthetic, "Synthetic model preset (default, tiny, tiny-qwen2, ...)");
  cmd->add_option("--seed", opts->model.synthetic_seed, "Seed of the synthetic model")->needs(synth);
  model->excludes(synth);
  cmd->add_option("--layer", opts->layer, "MoE layer index")->required();
  cmd->add_option("--input", opts->input, "safetensors file holding hidden_states [T, hidden] (F32 or BF16)")
      ->required();
  cmd->add_option("--output", opts->output, "safetensors file to write hidden_states [T, hidden] F32 to")
      ->required();
  cmd->add_option("--routing-out", opts->routing_out, "also write topk_ids [T, K] I32 and topk_weights [T, K] F32");
  cmd->add_option("--threads", opts->threads, "CPU backend threads (0: all cores)");
  cmd->add_option("--dequant-dtype", opts->dequant_dtype,
                  "what FP8 block / MXFP4 expert weights are dequantized to at load (--model; workers read "
                  "MOE_DEQUANT_DTYPE)")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str()
      ->envname("MOE_DEQUANT_DTYPE");
  auto* cluster = cmd->add_option("--cluster", opts->cluster, "run on the cluster whose coordinator is HOST:PORT");
  auto* workers = cmd->add_option("--workers", opts->workers,
                                  "workers HOST:PORT,... asked for the model and placement when the coordinator "
                                  "(--cluster) does not answer")
                       ->delimiter(',')
                       ->envname("MOE_WORKERS");
  cmd->add_flag("--deterministic", opts->deterministic,
                                      "local engine: each token's output the same bits whatever the batch (and the "
                                      "same as a --deterministic cluster's with --wire-dtype f32); with --cluster "
                                      "the coordinator's --deterministic decides")
                            ->envname("MOE_DETERMINISTIC");
  cluster->excludes(model)->excludes(synth);
  workers->excludes(model)->excludes(synth);
  add_cluster_token_flag(cmd, opts->cluster_token);
  add_tls_flags(*cmd, opts->transport);
  add_data_transport_flags(*cmd, opts->transport, false);
  cmd->add_option("--max-frame-bytes", opts->max_frame_bytes,
                  "largest request or reply frame with --cluster (calls with bigger worker shards are split)")
      ->check(CLI::Range(uint64_t{4096}, uint64_t{1} << 40))
      ->capture_default_str()
      ->envname("MOE_MAX_FRAME_BYTES");
  cmd->add_option("--request-timeout-ms", opts->request_timeout_ms,
                  "timeout of one request to a worker with --cluster (capped by --deadline-ms)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str()
      ->envname("MOE_REQUEST_TIMEOUT_MS");
  cmd->add_option("--wire-dtype", opts->wire_dtype, "dtype of tokens on the wire with --cluster")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();
  cmd->add_option("--deadline-ms", opts->deadline_ms, "deadline of the call with --cluster, retries included")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->callback([opts, &action, model, synth, cluster, workers] {
    if (model->count() + synth->count() + cluster->count() + workers->count() == 0)
      throw CLI::ValidationError("forward",
                                 "give one of --model DIR, --synthetic NAME or --cluster HOST:PORT (or --workers)");
    action = [opts] { return run_forward(*opts); };
  });
}

}  // namespace moe::cli
