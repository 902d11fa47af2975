// Resource bounds of the server side of a connection, and of a Server as a whole: what one peer may
// hold in a daemon (bytes of requests being handled plus replies not yet written), how long a
// connection may sit idle, how long a TLS handshake may take, and how many connections a daemon keeps.
#pragma once

#include <chrono>
#include <cstddef>

#include "runtime/wire/framing.h"

namespace moe {

struct ConnectionPolicy {
  // Bytes of requests received and not yet answered plus replies queued and not yet written. Past it,
  // no further request is read from that peer until replies drain (a slow reader gets backpressure
  // through TCP). 0: unbounded. One frame may overshoot it (a frame is read whole once started).
  size_t budget_bytes = 16u << 20;
  // No byte read or written for this long, and no request waiting on its handler: the connection is
  // closed (also a peer that vanished without a FIN, or one that stopped reading its replies). 0: never.
  std::chrono::milliseconds idle_timeout{300000};
  // A TLS handshake not finished by then closes the connection.
  std::chrono::milliseconds handshake_timeout{10000};
};

struct ServerOptions {
  FrameLimits limits{};
  ConnectionPolicy connection{};
  // Open connections at most; one more is closed as soon as it is accepted (and logged). 0: unbounded.
  size_t max_connections = 1024;
};

}  // namespace moe
