// Mutual TLS for every connection of a process: one TlsContext (the node's certificate and key, and the
// cluster CA that every peer's certificate must come from), loaded once and attached to an io_context.
// Every Connection::connect and Server on that io_context then speaks TLS: the server requires a client
// certificate signed by the CA (a peer without one, or with one from another CA, is refused during the
// handshake), and the client checks the server's certificate against the same CA. Identity is "holds
// a certificate from the cluster CA"; host names are not checked (nodes are addressed by IP).
// No TlsContext attached: plain TCP, as before.
#pragma once

#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>

namespace moe {

struct TlsFiles {
  std::string cert;  // PEM certificate chain of this node
  std::string key;   // PEM private key of that certificate
  std::string ca;    // PEM CA certificate(s) that peers' certificates must chain to
};

class TlsContext {
  struct Private {};

 public:
  // Reads and checks the three files; throws std::invalid_argument naming the file and the reason
  // (missing, unreadable, not PEM, key not matching the certificate).
  static std::shared_ptr<TlsContext> load(const TlsFiles& files);

  explicit TlsContext(Private);
  boost::asio::ssl::context& native() { return context_; }
  const TlsFiles& files() const { return files_; }

 private:
  boost::asio::ssl::context context_;
  TlsFiles files_;
};

// The OpenSSL context of `tls` as a shared_ptr that keeps `tls` alive (nullptr for nullptr): for
// servers outside runtime/net (the /metrics endpoint) that use the same certificates.
inline std::shared_ptr<boost::asio::ssl::context> shared_native(const std::shared_ptr<TlsContext>& tls) {
  return tls ? std::shared_ptr<boost::asio::ssl::context>(tls, &tls->native()) : nullptr;
}

// Attaches `tls` (nullptr: plain TCP) to `io`: connections made or accepted on `io` afterwards use it.
void set_io_tls(boost::asio::io_context& io, std::shared_ptr<TlsContext> tls);
// What set_io_tls attached to `io` (nullptr when nothing).
std::shared_ptr<TlsContext> io_tls(boost::asio::io_context& io);

// Text of the OpenSSL error (or other error) behind a failed handshake, e.g. "certificate verify failed".
std::string tls_error_text(const boost::system::error_code& ec);

}  // namespace moe
