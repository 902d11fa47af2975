// Parsing and printing of "host:port" addresses (see address.h).
#include "runtime/net/address.h"

#include <charconv>

#include "runtime/net/net_error.h"

namespace moe {

std::string HostPort::to_string() const {
  bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

HostPort parse_host_port(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return NetError(NetError::Kind::BadAddress, "bad address '" + text + "': " + why + " (expected HOST:PORT)");
  };
  size_t colon = text.rfind(':');
  if (colon == std::string::npos) throw bad("no port");
  std::string host = text.substr(0, colon);
  std::string port_text = text.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string::npos) {
    throw bad("IPv6 hosts need brackets");
  }
  if (host.empty()) throw bad("empty host");
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
  if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() || value > 65535) {
    throw bad("port '" + port_text + "' is not a number in 0..65535");
  }
  return HostPort{host, static_cast<uint16_t>(value)};
}

}  // namespace moe
