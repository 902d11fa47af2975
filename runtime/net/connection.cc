// Connection: read loop, write queue, request/reply matching with deadlines (see connection.h).
#include "runtime/net/connection.h"

#include "runtime/wire/text_limits.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <capnp/message.h>
#include <kj/exception.h>

#include "runtime/net/address.h"
#include "runtime/net/net_error.h"
#include "runtime/net/net_log.h"
#include "runtime/net/ucx_context.h"
#include "runtime/wire/envelope_util.h"

namespace moe {

namespace asio = boost::asio;
using boost::system::error_code;
using tcp = asio::ip::tcp;
namespace ssl = asio::ssl;

namespace {

constexpr size_t kReadBufferBytes = 64 * 1024;
// Bodies with at least this much left are read straight into the frame buffer (no copy).
constexpr size_t kDirectReadBytes = 64 * 1024;
// Error replies carry at most this much text.

std::string endpoint_text(const tcp::socket& socket) {
  error_code ec;
  auto endpoint = socket.remote_endpoint(ec);
  if (ec) return "(unknown peer)";
  return HostPort{endpoint.address().to_string(), endpoint.port()}.to_string();
}

long long to_ms(std::chrono::steady_clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

std::string describe_request(uint64_t id, wire::Envelope::Which kind) {
  return "request " + std::to_string(id) + " (" + message_kind_name(kind) + ")";
}

// Client connections read every reply (no budget) and are never closed for idleness here: the server
// side decides that, and owners reconnect.
ConnectionPolicy client_policy() {
  ConnectionPolicy policy;
  policy.budget_bytes = 0;
  policy.idle_timeout = std::chrono::milliseconds(0);
  return policy;
}

void call_done(const ReplyCallback& done, std::exception_ptr error, Frame reply) {
  try {
    done(error, std::move(reply));
  } catch (const std::exception& e) {
    net_log(std::string("reply callback threw: ") + e.what());
  }
}

}  // namespace

// ------------------------------------------------------------------------------------------ Responder

bool Responder::reply(capnp::MessageBuilder& message) const {
  auto connection = connection_.lock();
  if (!connection) return false;
  message.getRoot<wire::Envelope>().setRequestId(request_id_);
  kj::Array<capnp::word> frame;
  try {
    frame = encode_frame(message, connection->limits());
  } catch (const FrameError& e) {
    net_log(connection->peer() + ": reply to request " + std::to_string(request_id_) + " not sent: " + e.what());
    return reply_error(wire::ErrorCode::INTERNAL, std::string("reply not sent: ") + e.what());
  }
  return send_reply(kj::mv(frame));
}

bool Responder::reply(std::unique_ptr<capnp::MessageBuilder> message) const {
  auto connection = connection_.lock();
  if (!connection) return false;
  message->getRoot<wire::Envelope>().setRequestId(request_id_);
  SegmentedFrame frame;
  try {
    frame = encode_segmented_frame(std::move(message), connection->limits());
  } catch (const FrameError& e) {
    net_log(connection->peer() + ": reply to request " + std::to_string(request_id_) + " not sent: " + e.what());
    return reply_error(wire::ErrorCode::INTERNAL, std::string("reply not sent: ") + e.what());
  }
  return send_reply(std::move(frame));
}

bool Responder::send_reply(kj::Array<capnp::word> frame) const {
  auto connection = connection_.lock();
  if (!connection) return false;
  bool sent = connection->enqueue(kj::mv(frame), hold_);
  // The reply now counts (until written) in place of its request.
  if (in_flight_) in_flight_->release();
  return sent;
}

bool Responder::send_reply(SegmentedFrame frame) const {
  auto connection = connection_.lock();
  if (!connection) return false;
  bool sent = connection->enqueue(std::move(frame), hold_);
  if (in_flight_) in_flight_->release();
  return sent;
}

void InFlightRequest::release() {
  if (released_.exchange(true)) return;
  if (auto connection = connection_.lock()) connection->release_request(bytes_);
}

bool Responder::reply_error(wire::ErrorCode code, const std::string& message, uint64_t current_epoch) const {
  auto connection = connection_.lock();
  if (!connection) return false;
  capnp::MallocMessageBuilder builder;
  auto root = builder.initRoot<wire::Envelope>();
  root.setRequestId(request_id_);
  set_error(root, code, message.substr(0, kMaxErrorMessageBytes), current_epoch);
  return send_reply(encode_frame(builder));
}

// ------------------------------------------------------------------------------------ construction

std::shared_ptr<Connection> Connection::connect(asio::io_context& io, const std::string& host, uint16_t port,
                                                std::chrono::milliseconds timeout, FrameLimits limits) {
  struct Attempt {
    explicit Attempt(const asio::strand<asio::io_context::executor_type>& strand)
        : socket(strand), resolver(strand), timer(strand) {}
    Socket socket;
    tcp::resolver resolver;
    asio::steady_timer timer;
    bool done = false;
    error_code error;
    std::promise<void> finished;

    void finish(const error_code& ec) {
      if (done) return;
      done = true;
      error = ec;
      timer.cancel();
      finished.set_value();
    }
  };

  const std::string target = HostPort{host, port}.to_string();
  auto attempt = std::make_shared<Attempt>(asio::make_strand(io));
  auto finished = attempt->finished.get_future();
  asio::post(attempt->socket.get_executor(), [attempt, host, port, timeout] {
    attempt->timer.expires_after(timeout);
    attempt->timer.async_wait([attempt](const error_code& ec) {
      if (ec || attempt->done) return;
      attempt->resolver.cancel();
      error_code ignored;
      attempt->socket.close(ignored);
      attempt->finish(asio::error::timed_out);
    });
    attempt->resolver.async_resolve(
        host, std::to_string(port), [attempt](const error_code& ec, const tcp::resolver::results_type& results) {
          if (attempt->done) return;
          if (ec) {
            attempt->finish(ec);
            return;
          }
          asio::async_connect(attempt->socket, results,
                              [attempt](const error_code& connect_ec, const tcp::endpoint&) { attempt->finish(connect_ec); });
        });
  });

  // The io threads normally finish well within the timeout; the margin only guards a stopped pool.
  if (finished.wait_for(timeout + std::chrono::seconds(2)) != std::future_status::ready) {
    throw NetError(NetError::Kind::ConnectTimeout,
                   "connect to " + target + ": no answer from the io threads (is the IoPool running?)");
  }
  if (attempt->error == asio::error::timed_out) {
    throw NetError(NetError::Kind::ConnectTimeout,
                   "connect to " + target + " timed out after " + std::to_string(timeout.count()) + " ms");
  }
  if (attempt->error) {
    throw NetError(NetError::Kind::ConnectFailed, "connect to " + target + " failed: " + attempt->error.message());
  }
  error_code ignored;
  attempt->socket.set_option(tcp::no_delay(true), ignored);
  attempt->socket.set_option(asio::socket_base::keep_alive(true), ignored);
  auto tls = io_tls(io);
  auto connection =
      std::make_shared<Connection>(Private{}, std::move(attempt->socket), limits, nullptr, client_policy(), tls);
  if (tls) connection->client_handshake(target, timeout);
  connection->start();
  return connection;
}

std::shared_ptr<Connection> Connection::connect(asio::io_context& io, const std::string& host_port,
                                                std::chrono::milliseconds timeout, FrameLimits limits) {
  HostPort address = parse_host_port(host_port);
  return connect(io, address.host, address.port, timeout, limits);
}

std::shared_ptr<Connection> Connection::connect_ucx(asio::io_context& io, const std::string& host_port,
                                                    std::chrono::milliseconds timeout, FrameLimits limits) {
  HostPort address = parse_host_port(host_port);
  auto endpoint = UcxEndpoint::connect(UcxContext::instance(), address.host, address.port, timeout);
  return adopt(UcxStream(std::move(endpoint), asio::make_strand(io)), limits, nullptr, client_policy());
}

std::shared_ptr<Connection> Connection::adopt(UcxStream stream, FrameLimits limits, RequestHandler handler,
                                              ConnectionPolicy policy) {
  auto connection = std::make_shared<Connection>(Private{}, std::move(stream), limits, std::move(handler), policy);
  connection->start();
  return connection;
}

std::shared_ptr<Connection> Connection::accept(Socket socket, FrameLimits limits, RequestHandler handler,
                                               ConnectionPolicy policy, std::shared_ptr<TlsContext> tls) {
  error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  socket.set_option(asio::socket_base::keep_alive(true), ignored);
  auto connection = std::make_shared<Connection>(Private{}, std::move(socket), limits, std::move(handler), policy,
                                                 std::move(tls));
  connection->start();
  return connection;
}

namespace {
using Stream = std::variant<Connection::Socket, Connection::TlsStream, UcxStream>;
Stream make_stream(Connection::Socket socket, const std::shared_ptr<TlsContext>& tls) {
  if (!tls) return Stream(std::in_place_index<0>, std::move(socket));
  return Stream(std::in_place_index<1>, std::move(socket), tls->native());
}
}  // namespace

Connection::Connection(Private, Socket socket, FrameLimits limits, RequestHandler handler, ConnectionPolicy policy,
                       std::shared_ptr<TlsContext> tls)
    : stream_(make_stream(std::move(socket), tls)),
      tls_(std::move(tls)),
      strand_(tcp_socket().get_executor()),
      limits_(limits),
      handler_(std::move(handler)),
      policy_(policy),
      peer_(endpoint_text(tcp_socket())),
      idle_timer_(strand_),
      decoder_(limits),
      read_buffer_(kReadBufferBytes) {}

Connection::Connection(Private, UcxStream stream, FrameLimits limits, RequestHandler handler, ConnectionPolicy policy)
    : stream_(std::in_place_index<2>, std::move(stream)),
      strand_(std::get<UcxStream>(stream_).get_executor()),
      limits_(limits),
      handler_(std::move(handler)),
      policy_(policy),
      peer_(std::get<UcxStream>(stream_).peer()),
      idle_timer_(strand_),
      decoder_(limits),
      read_buffer_(kReadBufferBytes) {}

Connection::Socket& Connection::tcp_socket() {
  if (auto* plain = std::get_if<Socket>(&stream_)) return *plain;
  return std::get<TlsStream>(stream_).next_layer();
}

Connection::~Connection() {
  // Normally empty: close() or a broken socket already failed them. Left here when the io_context
  // was stopped and destroyed the handlers that kept this connection alive.
  fail(mark_closed(), "connection destroyed");
}

void Connection::start() {
  asio::post(strand_, [self = shared_from_this()] {
    if (self->tls_ && self->handler_) {
      self->server_handshake();
    } else {
      self->begin_reading();
    }
  });
}

void Connection::client_handshake(const std::string& target, std::chrono::milliseconds timeout) {
  struct State {
    std::promise<error_code> done;
    bool finished = false;
    bool timed_out = false;
  };
  auto state = std::make_shared<State>();
  auto future = state->done.get_future();
  auto timer = std::make_shared<asio::steady_timer>(strand_, timeout);
  asio::post(strand_, [self = shared_from_this(), state, timer] {
    timer->async_wait([self, state](const error_code& ec) {
      if (ec || state->finished) return;
      state->timed_out = true;
      error_code ignored;
      self->tcp_socket().close(ignored);
    });
    std::get<TlsStream>(self->stream_).async_handshake(ssl::stream_base::client, [state, timer](const error_code& ec) {
      state->finished = true;
      timer->cancel();
      state->done.set_value(ec);
    });
  });
  if (future.wait_for(timeout + std::chrono::seconds(2)) != std::future_status::ready) {
    close();
    throw NetError(NetError::Kind::ConnectTimeout, "TLS handshake with " + target + ": no answer from the io threads");
  }
  const error_code ec = future.get();
  if (!ec) return;
  const bool timed_out = state->timed_out;
  close();
  if (timed_out) {
    throw NetError(NetError::Kind::ConnectTimeout, "TLS handshake with " + target + " timed out after " +
                                                       std::to_string(timeout.count()) + " ms");
  }
  throw NetError(NetError::Kind::ConnectFailed, "TLS handshake with " + target + " failed: " + tls_error_text(ec));
}

void Connection::server_handshake() {
  auto timer = std::make_shared<asio::steady_timer>(strand_, policy_.handshake_timeout);
  timer->async_wait([weak = weak_from_this()](const error_code& ec) {
    if (ec) return;
    if (auto self = weak.lock()) {
      net_log(self->peer_ + ": TLS handshake not finished within " +
              std::to_string(self->policy_.handshake_timeout.count()) + " ms; closing");
      self->close_with("TLS handshake timed out");
    }
  });
  std::get<TlsStream>(stream_).async_handshake(
      ssl::stream_base::server, [self = shared_from_this(), timer](const error_code& ec) {
        timer->cancel();
        if (self->socket_closed_) return;
        if (ec) {
          net_log(self->peer_ + ": TLS handshake refused: " + tls_error_text(ec));
          self->close_with("TLS handshake failed: " + tls_error_text(ec));
          return;
        }
        self->begin_reading();
      });
}

void Connection::begin_reading() {
  last_activity_ = Clock::now();
  arm_idle_timer();
  read_more();
}

// ---------------------------------------------------------------------------------- budget, idleness

bool Connection::over_budget() const {
  return handler_ && policy_.budget_bytes != 0 && in_flight_bytes_.load() > policy_.budget_bytes;
}

void Connection::release_request(size_t bytes) {
  in_flight_bytes_.fetch_sub(bytes);
  awaiting_handler_.fetch_sub(1);
  if (reading_paused_.load()) asio::post(strand_, [self = shared_from_this()] { self->resume_reading(); });
}

void Connection::resume_reading() {
  if (!reading_paused_ || over_budget()) return;
  reading_paused_ = false;
  auto self = std::move(paused_self_);
  last_activity_ = Clock::now();
  read_more();
}

void Connection::arm_idle_timer() {
  if (!handler_ || policy_.idle_timeout.count() <= 0 || socket_closed_) return;
  idle_timer_.expires_at(last_activity_ + policy_.idle_timeout);
  idle_timer_.async_wait([weak = weak_from_this()](const error_code& ec) {
    if (ec) return;
    if (auto self = weak.lock()) self->on_idle_timer();
  });
}

void Connection::on_idle_timer() {
  if (socket_closed_) return;
  const auto now = Clock::now();
  if (awaiting_handler_.load() > 0) {
    // A request is still being worked on: not idle, whatever the socket does.
    last_activity_ = now;
  } else if (now - last_activity_ >= policy_.idle_timeout) {
    net_log(peer_ + ": no traffic for " + std::to_string(to_ms(policy_.idle_timeout)) + " ms; closing the connection");
    close_with("idle for " + std::to_string(to_ms(policy_.idle_timeout)) + " ms");
    return;
  }
  arm_idle_timer();
}

// --------------------------------------------------------------------------------------- requests

void Connection::request_async(capnp::MessageBuilder& message, Clock::duration timeout, ReplyCallback done) {
  auto root = message.getRoot<wire::Envelope>();
  const uint64_t id = next_request_id_.fetch_add(1);
  root.setRequestId(id);
  const auto kind = root.which();
  auto words = encode_frame(message, limits_);
  OutFrame frame;
  frame.bytes = words.size() * sizeof(capnp::word);
  frame.words = kj::mv(words);
  send_request(std::move(frame), id, kind, timeout, std::move(done));
}

void Connection::request_async(std::unique_ptr<capnp::MessageBuilder> message, Clock::duration timeout,
                               ReplyCallback done) {
  auto root = message->getRoot<wire::Envelope>();
  const uint64_t id = next_request_id_.fetch_add(1);
  root.setRequestId(id);
  const auto kind = root.which();
  SegmentedFrame segmented = encode_segmented_frame(std::move(message), limits_);
  OutFrame frame;
  frame.words = kj::mv(segmented.table);
  frame.message = std::move(segmented.message);
  frame.bytes = segmented.bytes;
  send_request(std::move(frame), id, kind, timeout, std::move(done));
}

void Connection::send_request(OutFrame frame, uint64_t id, wire::Envelope::Which kind, Clock::duration timeout,
                              ReplyCallback done) {
  std::unique_lock lock(pending_mutex_);
  if (closed_) {
    lock.unlock();
    call_done(done,
              std::make_exception_ptr(NetError(NetError::Kind::ConnectionClosed,
                                               describe_request(id, kind) + " to " + peer_ + ": connection is closed")),
              Frame{});
    return;
  }
  auto timer = std::make_shared<asio::steady_timer>(strand_, timeout);
  timer->async_wait([weak = weak_from_this(), id, timeout](const error_code& ec) {
    if (ec) return;  // cancelled: the reply came, or the connection closed
    if (auto self = weak.lock()) self->on_timeout(id, timeout);
  });
  pending_.emplace(id, Pending{std::move(done), std::move(timer), kind});
  lock.unlock();
  enqueue(std::move(frame));
}

std::future<Frame> Connection::request(capnp::MessageBuilder& message, Clock::duration timeout) {
  auto promise = std::make_shared<std::promise<Frame>>();
  auto future = promise->get_future();
  request_async(message, timeout, [promise](std::exception_ptr error, Frame reply) {
    if (error) {
      promise->set_exception(error);
    } else {
      promise->set_value(std::move(reply));
    }
  });
  return future;
}

bool Connection::send(capnp::MessageBuilder& message) { return enqueue(encode_frame(message, limits_)); }

void Connection::on_timeout(uint64_t request_id, Clock::duration timeout) {
  std::unique_lock lock(pending_mutex_);
  auto it = pending_.find(request_id);
  if (it == pending_.end()) return;
  Pending pending = std::move(it->second);
  pending_.erase(it);
  lock.unlock();
  call_done(pending.done,
            std::make_exception_ptr(NetError(NetError::Kind::DeadlineExceeded,
                                             describe_request(request_id, pending.kind) + " to " + peer_ +
                                                 ": no reply within " + std::to_string(to_ms(timeout)) + " ms")),
            Frame{});
}

size_t Connection::pending_requests() const {
  std::lock_guard lock(pending_mutex_);
  return pending_.size();
}

bool Connection::is_open() const {
  std::lock_guard lock(pending_mutex_);
  return !closed_;
}

// ------------------------------------------------------------------------------------------ closing

std::vector<Connection::Pending> Connection::mark_closed() {
  std::vector<Pending> out;
  std::lock_guard lock(pending_mutex_);
  closed_ = true;
  out.reserve(pending_.size());
  for (auto& [id, pending] : pending_) out.push_back(std::move(pending));
  pending_.clear();
  return out;
}

void Connection::fail(std::vector<Pending> pending, const std::string& reason) {
  for (auto& p : pending) {
    p.timer->cancel();
    call_done(p.done,
              std::make_exception_ptr(NetError(NetError::Kind::ConnectionClosed,
                                               "connection to " + peer_ + " closed (" + reason + ") while " +
                                                   message_kind_name(p.kind) + " request was pending")),
              Frame{});
  }
  // Every close path runs mark_closed() then fail(): the close callbacks run here, once.
  std::vector<std::function<void()>> callbacks;
  {
    std::lock_guard lock(pending_mutex_);
    callbacks.swap(close_callbacks_);
  }
  for (auto& callback : callbacks) {
    try {
      callback();
    } catch (const std::exception& e) {
      net_log(peer_ + ": close callback threw: " + e.what());
    }
  }
}

void Connection::on_close(std::function<void()> callback) {
  {
    std::lock_guard lock(pending_mutex_);
    if (!closed_) {
      close_callbacks_.push_back(std::move(callback));
      return;
    }
  }
  callback();
}

void Connection::close_with(const std::string& reason) {
  auto pending = mark_closed();
  asio::post(strand_, [self = shared_from_this()] { self->close_socket(); });
  fail(std::move(pending), reason);
}

void Connection::close() { close_with("closed locally"); }

void Connection::close_after_writes() {
  fail(mark_closed(), "closed locally");
  asio::post(strand_, [self = shared_from_this()] { self->close_after_flush(); });
}

void Connection::close_socket() {
  if (socket_closed_) return;
  socket_closed_ = true;
  stop_reading_ = true;
  error_code ignored;
  idle_timer_.cancel();
  if (auto* ucx = std::get_if<UcxStream>(&stream_)) {
    ucx->close();
  } else {
    tcp_socket().shutdown(tcp::socket::shutdown_both, ignored);
    tcp_socket().close(ignored);
  }
  paused_self_.reset();
  std::lock_guard lock(write_mutex_);
  write_queue_.clear();
}

void Connection::close_after_flush() {
  stop_reading_ = true;
  bool idle;
  {
    std::lock_guard lock(write_mutex_);
    idle = !write_scheduled_;
  }
  if (idle) {
    close_socket();
  } else {
    close_after_flush_ = true;
  }
}

// ------------------------------------------------------------------------------------------- reading

bool Connection::pause_if_over_budget() {
  if (!over_budget()) return false;
  // Backpressure: leave further requests in the decoder and the socket until replies drain. Pause
  // first, then look again, so a release racing with this either sees the pause or is seen here.
  reading_paused_ = true;
  if (over_budget()) {
    if (!paused_self_) paused_self_ = shared_from_this();
    return true;
  }
  reading_paused_ = false;
  return false;
}

void Connection::read_more() {
  // Frames decoded already go first (a 64 KiB read may hold thousands of small requests).
  for (;;) {
    if (stop_reading_ || socket_closed_) return;
    if (pause_if_over_budget()) return;
    if (!decoder_.has_output()) {
      if (decoder_.failed()) return;  // the stream cannot be resynchronised: nothing more to read
      break;
    }
    drain_decoder();
  }
  auto self = shared_from_this();
  auto window = decoder_.body_window();
  const bool direct = window.size() >= kDirectReadBytes;
  auto buffer = direct ? asio::buffer(window.data(), window.size()) : asio::buffer(read_buffer_.data(), read_buffer_.size());
  std::visit(
      [&](auto& stream) {
        stream.async_read_some(buffer, [self, direct](const error_code& ec, size_t n) { self->on_read(ec, n, direct); });
      },
      stream_);
}

void Connection::on_read(const error_code& ec, size_t bytes, bool direct) {
  if (ec) {
    on_read_error(ec);
    return;
  }
  last_activity_ = Clock::now();
  if (direct) {
    decoder_.commit_body(bytes);
  } else {
    decoder_.feed(std::span<const std::byte>(read_buffer_.data(), bytes));
  }
  read_more();  // dispatches what was decoded, within the budget, then reads on
}

void Connection::on_read_error(const error_code& ec) {
  if (socket_closed_) return;  // we closed it
  const bool peer_closed = ec == asio::error::eof || ec == ssl::error::stream_truncated;
  std::string reason = peer_closed ? "peer closed the connection" : tls_error_text(ec);
  try {
    decoder_.finish();
  } catch (const FrameError& e) {
    reason += ", " + std::string(e.what());
    net_log(peer_ + ": " + e.what());
  }
  close_with(reason);
}

void Connection::drain_decoder() {
  while (decoder_.has_output() && !socket_closed_ && !over_budget()) {
    Frame frame;
    try {
      frame = decoder_.pop();
    } catch (const FrameError& e) {
      on_frame_error(e);
      continue;
    }
    dispatch(std::move(frame));
  }
}

void Connection::dispatch(Frame frame) {
  const uint64_t id = frame.envelope().getRequestId();
  if (handler_) {
    const size_t bytes = frame.size_bytes();
    in_flight_bytes_.fetch_add(bytes);
    awaiting_handler_.fetch_add(1);
    Responder responder(weak_from_this(), id, std::make_shared<InFlightRequest>(weak_from_this(), bytes));
    std::string failure;
    try {
      handler_(std::move(frame), responder);
    } catch (const std::exception& e) {
      failure = e.what();
    } catch (const kj::Exception& e) {
      failure = e.getDescription().cStr();
    }
    if (!failure.empty()) {
      net_log(peer_ + ": handler failed on request " + std::to_string(id) + ": " + failure);
      responder.reply_error(wire::ErrorCode::INTERNAL, "handler failed: " + failure);
    }
    return;
  }
  std::unique_lock lock(pending_mutex_);
  auto it = pending_.find(id);
  if (it == pending_.end()) return;  // its deadline passed already: a late reply is dropped
  Pending pending = std::move(it->second);
  pending_.erase(it);
  lock.unlock();
  pending.timer->cancel();
  call_done(pending.done, nullptr, std::move(frame));
}

void Connection::on_frame_error(const FrameError& error) {
  const std::string what = error.what();
  if (handler_) {
    Responder responder(weak_from_this(), error.request_id().value_or(0));
    responder.reply_error(wire::ErrorCode::BAD_REQUEST, what);
    if (error.stream_usable()) {
      net_log(peer_ + ": bad frame: " + what + "; replied badRequest");
      return;
    }
    net_log(peer_ + ": bad frame: " + what + "; replied badRequest and closing the connection");
    fail(mark_closed(), "bad frame from peer: " + what);
    close_after_flush();
    return;
  }
  // Client role: a malformed reply fails its own request when it can be told apart, else everything.
  if (error.stream_usable() && error.request_id()) {
    std::unique_lock lock(pending_mutex_);
    auto it = pending_.find(*error.request_id());
    if (it != pending_.end()) {
      Pending pending = std::move(it->second);
      pending_.erase(it);
      lock.unlock();
      net_log(peer_ + ": bad reply frame: " + what);
      pending.timer->cancel();
      call_done(pending.done, std::make_exception_ptr(error), Frame{});
      return;
    }
  }
  net_log(peer_ + ": bad frame: " + what + "; closing the connection");
  close_with("bad frame from peer: " + what);
}

// ------------------------------------------------------------------------------------------- writing

bool Connection::enqueue(kj::Array<capnp::word> frame, std::shared_ptr<void> hold) {
  OutFrame out;
  out.bytes = frame.size() * sizeof(capnp::word);
  out.words = kj::mv(frame);
  out.hold = std::move(hold);
  return enqueue(std::move(out));
}

bool Connection::enqueue(SegmentedFrame frame, std::shared_ptr<void> hold) {
  OutFrame out;
  out.words = kj::mv(frame.table);
  out.message = std::move(frame.message);
  out.bytes = frame.bytes;
  out.hold = std::move(hold);
  return enqueue(std::move(out));
}

bool Connection::enqueue(OutFrame frame) {
  if (!is_open()) return false;
  bool schedule = false;
  in_flight_bytes_.fetch_add(frame.bytes);
  {
    std::lock_guard lock(write_mutex_);
    write_queue_.push_back(std::move(frame));
    if (!write_scheduled_) write_scheduled_ = schedule = true;
  }
  if (schedule) asio::post(strand_, [self = shared_from_this()] { self->write_batch(); });
  return true;
}

void Connection::write_batch() {
  {
    std::lock_guard lock(write_mutex_);
    for (auto& frame : write_queue_) writing_.push_back(std::move(frame));
    write_queue_.clear();
    if (writing_.empty() || socket_closed_) {
      writing_.clear();
      write_scheduled_ = false;
      return;
    }
  }
  std::vector<asio::const_buffer> buffers;
  buffers.reserve(writing_.size());
  writing_bytes_ = 0;
  for (auto& frame : writing_) {
    buffers.emplace_back(frame.words.begin(), frame.words.size() * sizeof(capnp::word));
    if (frame.message) {  // the segments themselves, after their table
      for (auto segment : frame.message->getSegmentsForOutput())
        buffers.emplace_back(segment.begin(), segment.size() * sizeof(capnp::word));
    }
    writing_bytes_ += frame.bytes;
  }
  std::visit(
      [&](auto& stream) {
        asio::async_write(stream, buffers,
                          [self = shared_from_this()](const error_code& ec, size_t) { self->on_written(ec); });
      },
      stream_);
}

void Connection::on_written(const error_code& ec) {
  writing_.clear();
  in_flight_bytes_.fetch_sub(writing_bytes_);
  writing_bytes_ = 0;
  if (!ec) {
    last_activity_ = Clock::now();
    if (reading_paused_) resume_reading();
  }
  if (ec) {
    {
      std::lock_guard lock(write_mutex_);
      write_queue_.clear();
      write_scheduled_ = false;
    }
    if (!socket_closed_) close_with("write failed: " + ec.message());
    return;
  }
  bool more;
  {
    std::lock_guard lock(write_mutex_);
    more = !write_queue_.empty();
    if (!more) write_scheduled_ = false;
  }
  if (more) {
    write_batch();
  } else if (close_after_flush_) {
    close_socket();
  }
}

}  // namespace moe
