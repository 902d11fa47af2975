// make_cluster_executor / parse_wire_dtype (see cluster_executor.h).
#include "cli/cluster_executor.h"

#include <stdexcept>

namespace moe::cli {

wire::DType parse_wire_dtype(const std::string& text) {
  if (text == "f32") return wire::DType::F32;
  if (text == "bf16") return wire::DType::BF16;
  throw std::invalid_argument("wire dtype must be f32 or bf16, got '" + text + "'");
}

std::unique_ptr<ClusterClient> make_cluster_client(const std::string& coordinator, const std::string& wire_dtype,
                                                   std::chrono::milliseconds deadline, const std::string& cluster_token,
                                                   std::shared_ptr<TlsContext> tls, const std::string& transport) {
  ClusterClientOptions options;
  options.tls = std::move(tls);
  options.transport = transport;
  options.wire_dtype = parse_wire_dtype(wire_dtype);
  options.deadline = deadline;
  options.cluster_token = cluster_token;
  return std::make_unique<ClusterClient>(coordinator, options);
}

std::unique_ptr<ClusterClient> make_cluster_client(const ClusterClientFlags& flags) {
  ClusterClientOptions options;
  options.wire_dtype = parse_wire_dtype(flags.wire_dtype);
  options.deadline = flags.deadline;
  options.request_timeout = flags.request_timeout;
  options.cluster_token = flags.cluster_token;
  options.frame_limits.max_message_bytes = flags.max_frame_bytes;
  options.tls = flags.tls;
  options.transport = flags.transport;
  return std::make_unique<ClusterClient>(flags.endpoints, options);
}

std::unique_ptr<MoeLayerExecutor> make_cluster_executor(const std::string& coordinator, const std::string& wire_dtype,
                                                        std::chrono::milliseconds deadline,
                                                        const std::string& cluster_token,
                                                        std::shared_ptr<TlsContext> tls) {
  return make_cluster_client(coordinator, wire_dtype, deadline, cluster_token, std::move(tls));
}

}  // namespace moe::cli
