// A minimal blocking HTTP/1.1 GET for the observability tests (Boost.Beast): fetches /metrics of our
// processes and Prometheus's HTTP API on 127.0.0.1, each call bounded by a timeout.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace moe::integration {

struct HttpReply {
  unsigned status = 0;
  std::string body;
};

// Throws std::runtime_error naming host:port and target when it cannot connect, send or read in time.
// bearer: sent as `Authorization: Bearer <bearer>` when not empty (a guarded /metrics).
HttpReply http_get(const std::string& host, uint16_t port, const std::string& target,
                   std::chrono::milliseconds timeout = std::chrono::milliseconds(3000), const std::string& bearer = "");

// Percent-encodes a query-string value (RFC 3986 unreserved characters stay as they are).
std::string url_encode(const std::string& text);

}  // namespace moe::integration
