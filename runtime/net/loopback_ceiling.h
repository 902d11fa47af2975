// The plain-socket ceiling of a request/reply exchange on loopback: send N bytes, get a small ack back,
// over one TCP connection with blocking sockets and no framing. Cluster benchmarks compare their
// forward-call throughput against it to show what the transport costs.
#pragma once

#include <cstddef>

namespace moe {

struct LoopbackCeiling {
  size_t payload_bytes = 0;
  int round_trips = 0;
  double seconds = 0;  // wall time of all round trips (after one warm-up)

  double bytes_per_second() const { return seconds > 0 ? payload_bytes * double(round_trips) / seconds : 0; }
  double mean_round_trip_seconds() const { return round_trips > 0 ? seconds / round_trips : 0; }
};

// Runs `round_trips` exchanges of `payload_bytes` (>= 1) bytes on 127.0.0.1 with a server thread it
// starts and joins. Throws NetError when sockets fail or the echo comes back wrong.
LoopbackCeiling measure_loopback_ceiling(size_t payload_bytes, int round_trips);

}  // namespace moe
