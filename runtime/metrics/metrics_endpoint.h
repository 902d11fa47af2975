// The /metrics endpoint of one process: a prometheus-cpp registry served over HTTP on a port (our own
// Asio server, metrics_http_server.h), plus the `moe_build_info` gauge every process exports. Port 0 means "no endpoint" (the registry still works,
// so code can record metrics unconditionally).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <prometheus/registry.h>

#include "runtime/metrics/metrics_http_server.h"

namespace moe {

class MetricsEndpoint {
 public:
  // Binds HOST:PORT (host defaults to 0.0.0.0 for daemons; tests pass 127.0.0.1). Throws
  // std::runtime_error naming the address when it cannot bind.
  // bearer_token: required on every scrape when not empty; tls: HTTPS with that context (the daemon's
  // mutual TLS) when set (metrics_http_server.h).
  MetricsEndpoint(const std::string& host, uint16_t port, const std::string& component, const std::string& backend,
                  std::string bearer_token = "", std::shared_ptr<boost::asio::ssl::context> tls = nullptr);
  ~MetricsEndpoint();
  prometheus::Registry& registry() { return *registry_; }
  std::shared_ptr<prometheus::Registry> shared_registry() { return registry_; }
  uint16_t port() const;  // the bound port (0 when disabled)
  bool tls() const { return server_ && server_->tls(); }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<MetricsHttpServer> server_;
};

}  // namespace moe
