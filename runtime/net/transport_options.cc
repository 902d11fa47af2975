// TransportOptions -> TlsContext / ServerOptions, and the cleartext-token rule (see transport_options.h).
#include "runtime/net/transport_options.h"

#include "runtime/net/data_link.h"

#include <stdexcept>

namespace moe {

bool TransportOptions::tls_enabled() const {
  if (tls == "on") return true;
  if (tls == "off") return false;
  if (tls == "auto") return !files.cert.empty() || !files.key.empty() || !files.ca.empty();
  throw std::invalid_argument("--tls must be on, off or auto, got '" + tls + "'");
}

std::shared_ptr<TlsContext> make_tls(const TransportOptions& options) {
  if (!options.tls_enabled()) return nullptr;
  std::string missing;
  if (options.files.cert.empty()) missing += " --tls-cert";
  if (options.files.key.empty()) missing += " --tls-key";
  if (options.files.ca.empty()) missing += " --tls-ca";
  if (!missing.empty()) {
    throw std::invalid_argument("TLS (--tls " + options.tls + ") needs --tls-cert, --tls-key and --tls-ca; missing:" +
                                missing + " (ops/tls/make-dev-certs.sh makes a development set, or --tls off)");
  }
  return TlsContext::load(options.files);
}

void check_token_transport(const TransportOptions& options, const std::string& token, const std::string& daemon) {
  if (token.empty() || options.tls_enabled() || options.allow_cleartext_token) return;
  throw std::invalid_argument(daemon + " has a --cluster-token but TLS is off: the token would travel in clear "
                              "text. Give --tls-cert/--tls-key/--tls-ca, or --allow-cleartext-token to accept that");
}

void check_data_transport(const TransportOptions& options) {
  if (parse_data_transport(options.data_transport) == DataTransport::Ucx && options.tls_enabled()) {
    throw std::invalid_argument("--transport ucx carries no TLS, but TLS is on (--tls " + options.tls +
                                "): use --transport tcp with TLS, or --tls off");
  }
}

ServerOptions server_options(const TransportOptions& options, const FrameLimits& limits) {
  ServerOptions out;
  out.limits = limits;
  out.max_connections = options.max_connections;
  out.connection.idle_timeout = std::chrono::milliseconds(options.idle_timeout_ms);
  out.connection.budget_bytes = options.connection_budget_bytes;
  return out;
}

}  // namespace moe
