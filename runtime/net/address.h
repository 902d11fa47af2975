// "host:port" addresses as they travel in RegisterWorker / Placement, and their parsing.
#pragma once

#include <cstdint>
#include <string>

namespace moe {

struct HostPort {
  std::string host;   // name, IPv4, or IPv6 without brackets
  uint16_t port = 0;

  std::string to_string() const;  // "127.0.0.1:5000", "[::1]:5000"
};

// Parses "host:port" or "[v6]:port". Throws NetError(BadAddress) naming the text and what is wrong.
HostPort parse_host_port(const std::string& text);

}  // namespace moe
