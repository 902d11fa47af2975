// moectl's way to a cluster: a MoeLayerExecutor (ClusterClient) for `--cluster HOST:PORT` (and/or
// `--workers HOST:PORT,...`, asked for model and placement when the coordinator does not answer), and
// the `--wire-dtype f32|bf16` flag's parsing, shared by forward, demo and bench cluster.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "runtime/client/cluster_client.h"
#include "runtime/engine/moe_layer_executor.h"

namespace moe::cli {

// "f32" | "bf16" -> wire::DType; throws std::invalid_argument naming the text otherwise.
wire::DType parse_wire_dtype(const std::string& text);

// Connects to the coordinator at `coordinator` and fetches model and placement; throws NetError when
// it is unreachable.
// `cluster_token` goes with every forward (workers started with --cluster-token require it).
std::unique_ptr<ClusterClient> make_cluster_client(const std::string& coordinator, const std::string& wire_dtype,
                                                   std::chrono::milliseconds deadline = std::chrono::seconds(10),
                                                   const std::string& cluster_token = "",
                                                   std::shared_ptr<TlsContext> tls = nullptr,
                                                   const std::string& transport = "tcp");

// Everything moectl forward can say about its client.
struct ClusterClientFlags {
  ClusterEndpoints endpoints;
  std::string wire_dtype = "bf16";
  std::chrono::milliseconds deadline{10000};
  std::chrono::milliseconds request_timeout{3000};
  std::string cluster_token;
  uint64_t max_frame_bytes = 64u << 20;  // the client splits calls whose requests would be bigger
  std::shared_ptr<TlsContext> tls;        // mutual TLS (nullptr: plain TCP)
  std::string transport = "tcp";          // forward requests to workers over tcp | ucx
};
std::unique_ptr<ClusterClient> make_cluster_client(const ClusterClientFlags& flags);

std::unique_ptr<MoeLayerExecutor> make_cluster_executor(const std::string& coordinator, const std::string& wire_dtype,
                                                        std::chrono::milliseconds deadline = std::chrono::seconds(10),
                                                        const std::string& cluster_token = "",
                                                        std::shared_ptr<TlsContext> tls = nullptr);

}  // namespace moe::cli
