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
  State(asio::io_context& io_context, RequestHandler request_handler, FrameLimits frame_limits)
      : io(io_context),
        strand(asio::make_strand(io_context)),
        acceptor(strand),
        retry_timer(strand),
        handler(std::move(request_handler)),
        limits(frame_limits) {}

  asio::io_context& io;
  asio::strand<asio::io_context::executor_type> strand;
  tcp::acceptor acceptor;
  asio::steady_timer retry_timer;
  RequestHandler handler;
  FrameLimits limits;

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
    auto connection = Connection::accept(std::move(socket), limits, gated_handler());
    {
      std::lock_guard lock(connections_mutex);
      std::erase_if(connections, [](const std::weak_ptr<Connection>& c) {
        auto alive = c.lock();
        return !alive || !alive->is_open();
      });
      connections.push_back(connection);
    }
    if (stopped) connection->close();  // stop() ran while this one was being accepted
    accept_next();
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
    : state_(std::make_shared<State>(io, std::move(handler), limits)), host_(host) {
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
