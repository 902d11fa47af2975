// A minimal HTTP/1.1 server for Prometheus scrapes: GET /metrics answers the registry in the text
// exposition format (version 0.0.4), anything else 404; one request per connection (Connection: close).
// With a bearer token set, a scrape must carry `Authorization: Bearer <token>` (compared in constant
// time); without it: 401 with WWW-Authenticate. The daemons pass their cluster token (issue 12).
// With a TLS context (the daemon's mutual-TLS one, --tls) it serves HTTPS only: a scraper must present
// a certificate from the cluster CA, as every other peer does; plain HTTP is dropped at the handshake.
// Built on Boost.Asio with its own thread, so it shares nothing with the process's other servers.
// We use it instead of prometheus-cpp's civetweb Exposer, whose worker threads overflowed their stack
// inside civetweb's auth-file lookup in moe-worker (SIGSEGV on the first scrape).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <boost/asio/ssl/context.hpp>
#include <prometheus/registry.h>

namespace moe {

class MetricsHttpServer {
 public:
  // Binds HOST:PORT (port 0: a free port) and starts serving. Throws std::runtime_error naming the
  // address and the reason when it cannot bind.
  // bearer_token: empty for an open endpoint. tls: nullptr for plain HTTP.
  MetricsHttpServer(const std::string& host, uint16_t port, std::shared_ptr<prometheus::Registry> registry,
                    std::string bearer_token = "", std::shared_ptr<boost::asio::ssl::context> tls = nullptr);
  ~MetricsHttpServer();  // stops accepting and joins the thread
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;
  uint16_t port() const;
  bool tls() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace moe
