// The transport flags shared by moe-worker, moe-coordinator and moectl (each with its MOE_* variable):
// add_tls_flags for every process (--tls, --tls-cert, --tls-key, --tls-ca), add_server_bound_flags for
// the daemons (--allow-cleartext-token, --max-connections, --idle-timeout-ms, --connection-budget-bytes),
// add_data_transport_flags for the data path (--transport tcp|ucx, and the worker's --ucx-port).
// Header-only over CLI11 so that runtime/net itself does not need CLI11.
#pragma once

#include <CLI/CLI.hpp>

#include "runtime/net/transport_options.h"

namespace moe {

inline void add_tls_flags(CLI::App& app, TransportOptions& o) {
  app.add_option("--tls", o.tls, "mutual TLS on every connection: on, off, or auto (on when certificate files are given)")
      ->check(CLI::IsMember({"on", "off", "auto"}))
      ->capture_default_str()
      ->envname("MOE_TLS");
  app.add_option("--tls-cert", o.files.cert, "PEM certificate of this node, signed by the cluster CA")
      ->envname("MOE_TLS_CERT");
  app.add_option("--tls-key", o.files.key, "PEM private key of --tls-cert")->envname("MOE_TLS_KEY");
  app.add_option("--tls-ca", o.files.ca, "PEM CA certificate every peer's certificate must be signed by")
      ->envname("MOE_TLS_CA");
}

// --transport (every process that sends or serves forward requests) and, for moe-worker, --ucx-port.
inline void add_data_transport_flags(CLI::App& app, TransportOptions& o, bool worker) {
  app.add_option("--transport", o.data_transport,
                 worker ? "forward requests also over: tcp (only TCP) or ucx (also a UCX listener: shared memory on one "
                          "host, RDMA/TCP between hosts; control stays on TCP)"
                        : "forward requests to workers over tcp or ucx (the workers must run --transport ucx; control "
                          "stays on TCP)")
      ->check(CLI::IsMember({"tcp", "ucx"}))
      ->capture_default_str()
      ->envname("MOE_TRANSPORT");
  if (worker) {
    app.add_option("--ucx-port", o.ucx_port, "UCX listen port with --transport ucx (0: any free port)")
        ->capture_default_str()
        ->envname("MOE_UCX_PORT");
  }
}

inline void add_server_bound_flags(CLI::App& app, TransportOptions& o) {
  app.add_flag("--allow-cleartext-token", o.allow_cleartext_token,
               "start with a --cluster-token although TLS is off (the token then travels in clear text)")
      ->envname("MOE_ALLOW_CLEARTEXT_TOKEN");
  app.add_option("--max-connections", o.max_connections, "open connections at most; more are closed on accept (0: no cap)")
      ->capture_default_str()
      ->envname("MOE_MAX_CONNECTIONS");
  app.add_option("--idle-timeout-ms", o.idle_timeout_ms,
                 "close a connection with no traffic and no request in progress for this long (0: never)")
      ->capture_default_str()
      ->envname("MOE_IDLE_TIMEOUT_MS");
  app.add_option("--connection-budget-bytes", o.connection_budget_bytes,
                 "bytes of requests in progress plus unwritten replies one connection may hold; past it its "
                 "further requests wait unread (0: unbounded)")
      ->capture_default_str()
      ->envname("MOE_CONNECTION_BUDGET_BYTES");
}

}  // namespace moe
