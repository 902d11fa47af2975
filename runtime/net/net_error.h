// The exception of the transport layer: what failed (connect, a closed connection, a deadline) and
// with which peer and values.
#pragma once

#include <stdexcept>
#include <string>

namespace moe {

class NetError : public std::runtime_error {
 public:
  enum class Kind {
    BadAddress,        // "host:port" that does not parse
    ListenFailed,      // bind / listen
    ConnectFailed,     // refused, unreachable, unresolvable
    ConnectTimeout,
    ConnectionClosed,  // the connection broke or was closed while a request waited
    DeadlineExceeded,  // no reply within the request's deadline
    TransportUnavailable,  // the peer does not offer the transport asked for (--transport ucx): not retried
  };

  NetError(Kind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

}  // namespace moe
