// How a process's connections travel and how far its servers let peers go: TLS on or off (with the
// node's certificate, key and the cluster CA), the cleartext-token rule, and the per-connection bounds.
// Filled from flags by transport_flags.h; turned into a TlsContext and ServerOptions here.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "runtime/net/connection_policy.h"
#include "runtime/net/tls_context.h"
#include "runtime/wire/framing.h"

namespace moe {

struct TransportOptions {
  std::string tls = "auto";  // on | off | auto (on when --tls-cert, --tls-key or --tls-ca is given)
  TlsFiles files;
  // A daemon given a cluster token without TLS would send and accept it in clear text: it refuses to
  // start unless this is set.
  bool allow_cleartext_token = false;
  uint32_t max_connections = 1024;
  uint64_t idle_timeout_ms = 300000;
  uint64_t connection_budget_bytes = 16u << 20;
  // The data path (forward requests and replies): tcp, or ucx (data_link.h). A worker with ucx also
  // listens for UCX at its listen host and ucx_port (0: a free port) and tells clients where.
  std::string data_transport = "tcp";
  uint16_t ucx_port = 0;

  // Whether TLS is asked for (throws std::invalid_argument on a --tls value other than on/off/auto).
  bool tls_enabled() const;
};

// The TlsContext the options ask for, loaded and checked; nullptr when TLS is off. Throws
// std::invalid_argument naming the flag that is wrong or missing.
std::shared_ptr<TlsContext> make_tls(const TransportOptions& options);

// Throws std::invalid_argument when `daemon` has a cluster token, TLS is off and cleartext tokens are
// not allowed.
void check_token_transport(const TransportOptions& options, const std::string& token, const std::string& daemon);

// Throws std::invalid_argument when --transport is neither tcp nor ucx, or ucx is asked for with TLS on
// (UCX connections carry no TLS).
void check_data_transport(const TransportOptions& options);

// The bounds of a daemon's Server.
ServerOptions server_options(const TransportOptions& options, const FrameLimits& limits);

}  // namespace moe
