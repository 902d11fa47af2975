// A minimal HTTP/1.1 server for Prometheus scrapes: GET /metrics answers the registry in the text
// exposition format (version 0.0.4), anything else 404; one request per connection (Connection: close).
// Built on Boost.Asio with its own thread, so it shares nothing with the process's other servers.
// We use it instead of prometheus-cpp's civetweb Exposer, whose worker threads overflowed their stack
// inside civetweb's auth-file lookup in moe-worker (SIGSEGV on the first scrape).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <prometheus/registry.h>

namespace moe {

class MetricsHttpServer {
 public:
  // Binds HOST:PORT (port 0: a free port) and starts serving. Throws std::runtime_error naming the
  // address and the reason when it cannot bind.
  MetricsHttpServer(const std::string& host, uint16_t port, std::shared_ptr<prometheus::Registry> registry);
  ~MetricsHttpServer();  // stops accepting and joins the thread
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;
  uint16_t port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace moe
