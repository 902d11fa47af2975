// A TCP server for frames: accepts connections on HOST:PORT (port 0 picks a free port; port() tells
// which) and hands every incoming request to one handler with a Responder. Handlers run on the io
// threads (one connection's requests one at a time); slow work should move to another thread and reply
// from there. Bad frames are answered and logged by Connection; other connections go on unaffected.
// Bounded (ServerOptions): connections at most max_connections (more are closed on accept), each with a
// budget of in-flight bytes and an idle timeout (ConnectionPolicy). With a TlsContext attached to the
// io_context (tls_context.h) every connection is mutual TLS.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "runtime/net/connection.h"
#include "runtime/net/connection_policy.h"
#include "runtime/wire/framing.h"

namespace moe {

class Server {
 public:
  // Binds and listens at once; throws NetError(ListenFailed) naming the address and the reason.
  Server(boost::asio::io_context& io, const std::string& host, uint16_t port, RequestHandler handler,
         FrameLimits limits = {});
  Server(boost::asio::io_context& io, const std::string& host, uint16_t port, RequestHandler handler,
         const ServerOptions& options);
  ~Server();  // stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  uint16_t port() const { return port_; }
  const std::string& host() const { return host_; }
  std::string address() const;  // "host:port" with the bound port

  // Stops accepting, waits for handler calls in progress to return (no handler starts afterwards),
  // then closes every connection after writing the replies already queued on it (up to kFlushLimit;
  // whatever is still unwritten then is dropped). Replies sent later through a Responder are dropped.
  // Idempotent. Called from inside a handler it waits for neither (it cannot).
  void stop();
  static constexpr std::chrono::milliseconds kFlushLimit{3000};
  // Serves a connection that arrived by another transport (UcxListener) as one of this server's own:
  // `make` builds it from this server's limits, gated handler and connection policy; it counts against
  // max_connections and closes with stop(). Returns nullptr (make is not called) when the cap is
  // reached (logged like a refused TCP connection, naming `peer`) or the server has stopped.
  using ConnectionMaker =
      std::function<std::shared_ptr<Connection>(const FrameLimits&, RequestHandler, const ConnectionPolicy&)>;
  std::shared_ptr<Connection> adopt(const ConnectionMaker& make, const std::string& peer);
  size_t connection_count() const;  // open connections
  size_t refused_connections() const;  // closed on accept because max_connections were open
  bool tls() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
  std::string host_;
  uint16_t port_ = 0;
};

}  // namespace moe
