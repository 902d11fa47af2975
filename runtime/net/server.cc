// Server: acceptor loop, connection tracking, and a gate that lets stop() wait for running handlers.
#include "runtime/net/server.h"

#include <thread>

#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>

#include "runtime/net/address.h"
#include "runtime/net/net_error.h"
#include "runtime/net/net_log.h"

namespace moe {

namespace asio = boost::asio;
using boost::system::error_code;
using tcp = asio::ip::tcp;

namespace {
// Handler calls in progress on this thread (so stop() from a handler does not wait for itself).
thread_local int handler_depth = 0;
// After a failed accept (out of file descriptors, ...), wait this long before the next one.
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(50);
}  // namespace

struct Server::State : std::enable_shared_from_this<Server::State> {
  using ConnectionMaker = Server::ConnectionMaker;
  State(asio::io_context& io_context, RequestHandler request_handler, const ServerOptions& server_options)
      : io(io_context),
        strand(asio::make_strand(io_context)),
        acceptor(strand),
        retry_timer(strand),
        handler(std::move(request_handler)),
        options(server_options),
        tls(io_tls(io_context)) {}

  asio::io_context& io;
  asio::strand<asio::io_context::executor_type> strand;
  tcp::acceptor acceptor;
  asio::steady_timer retry_timer;
  RequestHandler handler;
  ServerOptions options;
  std::shared_ptr<TlsContext> tls;
  std::atomic<size_t> refused{0};

  // Gate: handler calls hold it shared; stop() takes it exclusively once to wait for them.
  std::shared_mutex gate;
  std::atomic<bool> stopped{false};

  mutable std::mutex connections_mutex;
  std::vector<std::weak_ptr<Connection>> connections;

  void accept_next() {  // strand
    if (stopped) return;
    acceptor.async_accept(asio::make_strand(io), [self = shared_from_this()](const error_code& ec, tcp::socket socket) {
      self->on_accept(ec, std::move(socket));
    });
  }

  void on_accept(const error_code& ec, tcp::socket socket) {  // strand
    if (stopped) return;
    if (ec) {
      if (ec == asio::error::operation_aborted) return;
      net_log("accept failed: " + ec.message() + "; retrying");
      retry_timer.expires_after(kAcceptRetryDelay);
      retry_timer.async_wait([self = shared_from_this()](const error_code& wait_ec) {
        if (!wait_ec) self->accept_next();
      });
      return;
    }
    error_code ignored;
    auto endpoint = socket.remote_endpoint(ignored);
    const std::string peer = endpoint.address().to_string() + ":" + std::to_string(endpoint.port());
    auto connection = admit(
        [&](const FrameLimits& limits, RequestHandler handler, const ConnectionPolicy& policy) {
          return Connection::accept(std::move(socket), limits, std::move(handler), policy, tls);
        },
        peer);
    if (!connection) {
      socket.close(ignored);
      accept_next();
      return;
    }
    if (stopped) connection->close();  // stop() ran while this one was being accepted
    accept_next();
  }

  // Counts a new connection against the cap and builds it (nullptr when over the cap).
  std::shared_ptr<Connection> admit(const ConnectionMaker& make, const std::string& peer) {
    std::lock_guard lock(connections_mutex);
    std::erase_if(connections, [](const std::weak_ptr<Connection>& c) {
      auto alive = c.lock();
      return !alive || !alive->is_open();
    });
    if (options.max_connections != 0 && connections.size() >= options.max_connections) {
      if (refused++ % 100 == 0) {  // one line per 100 refusals: a flood does not flood the log
        net_log("refusing connection from " + peer + ": " + std::to_string(connections.size()) +
                " connections open, the cap is " + std::to_string(options.max_connections) +
                " (--max-connections); " + std::to_string(refused.load()) + " refused so far");
      }
      return nullptr;
    }
    auto connection = make(options.limits, gated_handler(), options.connection);
    connections.push_back(connection);
    return connection;
  }

  RequestHandler gated_handler() {
    return [weak = weak_from_this()](Frame request, Responder responder) {
      auto self = weak.lock();
      if (!self) return;
      std::shared_lock lock(self->gate);
      if (self->stopped) return;
      ++handler_depth;
      struct Leave {
        ~Leave() { --handler_depth; }
      } leave;
      self->handler(std::move(request), std::move(responder));
    };
  }
};

Server::Server(asio::io_context& io, const std::string& host, uint16_t port, RequestHandler handler,
               FrameLimits limits)
    : Server(io, host, port, std::move(handler), ServerOptions{.limits = limits}) {}

Server::Server(asio::io_context& io, const std::string& host, uint16_t port, RequestHandler handler,
               const ServerOptions& options)
    : state_(std::make_shared<State>(io, std::move(handler), options)), host_(host) {
  const std::string target = HostPort{host, port}.to_string();
  try {
    tcp::resolver resolver(io);
    auto results = resolver.resolve(host, std::to_string(port), tcp::resolver::passive | tcp::resolver::numeric_service);
    tcp::endpoint endpoint = results.begin()->endpoint();
    state_->acceptor.open(endpoint.protocol());
    state_->acceptor.set_option(tcp::acceptor::reuse_address(true));
    state_->acceptor.bind(endpoint);
    state_->acceptor.listen(asio::socket_base::max_listen_connections);
    port_ = state_->acceptor.local_endpoint().port();
  } catch (const boost::system::system_error& e) {
    throw NetError(NetError::Kind::ListenFailed, "cannot listen on " + target + ": " + e.code().message());
  }
  asio::post(state_->strand, [state = state_] { state->accept_next(); });
}

Server::~Server() { stop(); }

std::string Server::address() const { return HostPort{host_, port_}.to_string(); }

void Server::stop() {
  if (state_->stopped.exchange(true)) return;
  if (handler_depth == 0) {
    std::unique_lock wait_for_handlers(state_->gate);
  }
  asio::post(state_->strand, [state = state_] {
    error_code ignored;
    state->retry_timer.cancel();
    state->acceptor.close(ignored);
  });
  std::vector<std::shared_ptr<Connection>> open;
  {
    std::lock_guard lock(state_->connections_mutex);
    for (auto& weak : state_->connections) {
      if (auto connection = weak.lock()) open.push_back(std::move(connection));
    }
    state_->connections.clear();
  }
  for (auto& connection : open) connection->close_after_writes();
  // Not from a handler (its own io thread may be the one that has to write), and not when no io thread
  // runs any more (nothing would write).
  if (handler_depth == 0 && !state_->io.stopped()) {
    const auto deadline = std::chrono::steady_clock::now() + kFlushLimit;
    for (auto& connection : open) {
      while (!connection->socket_closed() && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
  }
  for (auto& connection : open) connection->close();
}

std::shared_ptr<Connection> Server::adopt(const ConnectionMaker& make, const std::string& peer) {
  if (state_->stopped) return nullptr;
  auto connection = state_->admit(make, peer);
  if (connection && state_->stopped) connection->close();  // stop() ran while it was being adopted
  return connection;
}

size_t Server::refused_connections() const { return state_->refused; }

bool Server::tls() const { return state_->tls != nullptr; }

size_t Server::connection_count() const {
  std::lock_guard lock(state_->connections_mutex);
  size_t count = 0;
  for (auto& weak : state_->connections) {
    auto connection = weak.lock();
    if (connection && connection->is_open()) ++count;
  }
  return count;
}

}  // namespace moe
