// One TCP connection carrying frames (one Envelope each) in both directions, over Boost.Asio.
//
// - A read loop decodes frames with FrameDecoder (limits checked before allocating).
// - A write queue batches frames from any thread into one gathered write.
// - Client role (no handler): request() sends a request with a fresh requestId and a deadline; many
//   requests may be in flight; replies are matched by id and may come out of order. When the connection
//   breaks or closes, every pending request fails at once with NetError(ConnectionClosed).
// - Server role (a handler, set by Server): every incoming frame goes to the handler with a Responder
//   that may reply later, from any thread, in any order. A bad frame gets a typed badRequest reply;
//   when the stream cannot be resynchronised (too large, too many segments) the connection is closed
//   after that reply.
//
// All socket work runs on the connection's strand; the read loop keeps the connection alive until the
// socket closes, so an owner must call close() (Server::stop closes its own). Plain TCP: TLS is not
// implemented yet; it would wrap socket_ in boost::asio::ssl::stream here and nowhere else.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "runtime/wire/framing.h"
#include "runtime/wire/moe.capnp.h"

namespace moe {

class Connection;

// Replies to one incoming request. Cheap to copy; safe to use from any thread, after the handler has
// returned. Replying on a closed connection does nothing (returns false).
class Responder {
 public:
  Responder(std::weak_ptr<Connection> connection, uint64_t request_id)
      : connection_(std::move(connection)), request_id_(request_id) {}

  uint64_t request_id() const { return request_id_; }
  // The connection the request came on (expired once it is gone): lets a service tie state to it
  // and learn of its closing through Connection::on_close.
  const std::weak_ptr<Connection>& connection() const { return connection_; }
  // Sets the reply's requestId and sends it. A reply over the frame limits is replaced by an
  // `internal` error reply (and logged), so the peer is never left waiting.
  bool reply(capnp::MessageBuilder& message) const;
  bool reply_error(wire::ErrorCode code, const std::string& message, uint64_t current_epoch = 0) const;

 private:
  std::weak_ptr<Connection> connection_;
  uint64_t request_id_;
};

using RequestHandler = std::function<void(Frame request, Responder responder)>;
// Called exactly once: with the reply frame (error == nullptr), or with the error and an empty frame.
// An `error` reply from the peer is a reply, not an error: see throw_if_error / expect_kind.
using ReplyCallback = std::function<void(std::exception_ptr error, Frame reply)>;

class Connection : public std::enable_shared_from_this<Connection> {
  struct Private {};

 public:
  using Socket = boost::asio::ip::tcp::socket;
  using Clock = std::chrono::steady_clock;

  // Client side: resolves and connects, failing with NetError(ConnectFailed / ConnectTimeout) after
  // `timeout`. Blocks the caller; do not call it on a thread of the io_context's pool.
  static std::shared_ptr<Connection> connect(boost::asio::io_context& io, const std::string& host, uint16_t port,
                                             std::chrono::milliseconds timeout, FrameLimits limits = {});
  static std::shared_ptr<Connection> connect(boost::asio::io_context& io, const std::string& host_port,
                                             std::chrono::milliseconds timeout, FrameLimits limits = {});
  // Server side: takes an accepted socket (its executor should be a strand) and starts reading.
  static std::shared_ptr<Connection> accept(Socket socket, FrameLimits limits, RequestHandler handler);

  Connection(Private, Socket socket, FrameLimits limits, RequestHandler handler);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Sends `message` (root: Envelope; its requestId is overwritten) and calls `done` once with the reply,
  // or with NetError(DeadlineExceeded) after `timeout`, or NetError(ConnectionClosed). On a closed
  // connection `done` runs at once, on the calling thread. Throws FrameError when the message is over
  // the frame limits. Thread-safe.
  void request_async(capnp::MessageBuilder& message, Clock::duration timeout, ReplyCallback done);
  std::future<Frame> request(capnp::MessageBuilder& message, Clock::duration timeout);

  // Sends a frame that expects no reply (its requestId is left as set). False when closed. Throws
  // FrameError when the message is over the frame limits. Thread-safe.
  bool send(capnp::MessageBuilder& message);

  // Fails every pending request with NetError(ConnectionClosed) now, and closes the socket. Idempotent.
  void close();
  // Like close(), except that the frames already queued (replies computed before a shutdown) are
  // written first; the socket closes after the last one. Nothing new is queued or read meanwhile.
  // socket_closed() turns true when done; close() afterwards cuts the flush short.
  void close_after_writes();
  bool socket_closed() const { return socket_closed_; }
  bool is_open() const;
  // Runs `callback` once when the connection closes for any reason (local close, peer close, broken
  // socket, fatal bad frame), on the thread that closes it; at once, on the calling thread, when it is
  // closed already. The callback must not block. Thread-safe.
  void on_close(std::function<void()> callback);
  const std::string& peer() const { return peer_; }
  const FrameLimits& limits() const { return limits_; }
  size_t pending_requests() const;

 private:
  friend class Responder;
  struct Pending {
    ReplyCallback done;
    std::shared_ptr<boost::asio::steady_timer> timer;
    wire::Envelope::Which kind;
  };

  void start();
  bool enqueue(kj::Array<capnp::word> frame);
  // strand only:
  void read_more();
  void on_read(const boost::system::error_code& ec, size_t bytes, bool direct);
  void on_read_error(const boost::system::error_code& ec);
  void drain_decoder();
  void dispatch(Frame frame);
  void on_frame_error(const FrameError& error);
  void write_batch();
  void on_written(const boost::system::error_code& ec);
  void close_socket();
  void close_after_flush();
  // any thread:
  void on_timeout(uint64_t request_id, Clock::duration timeout);
  std::vector<Pending> mark_closed();
  void fail(std::vector<Pending> pending, const std::string& reason);
  void close_with(const std::string& reason);

  Socket socket_;
  boost::asio::any_io_executor strand_;  // socket_'s executor
  FrameLimits limits_;
  RequestHandler handler_;
  std::string peer_;

  // Read side (strand only).
  FrameDecoder decoder_;
  std::vector<std::byte> read_buffer_;
  bool stop_reading_ = false;
  std::atomic<bool> socket_closed_{false};  // written on the strand, read by socket_closed()

  // Write side: the queue is shared with every sending thread; the batch in flight is strand only.
  std::mutex write_mutex_;
  std::deque<kj::Array<capnp::word>> write_queue_;
  bool write_scheduled_ = false;
  std::vector<kj::Array<capnp::word>> writing_;
  bool close_after_flush_ = false;

  // Requests waiting for a reply.
  mutable std::mutex pending_mutex_;
  std::unordered_map<uint64_t, Pending> pending_;
  bool closed_ = false;
  std::vector<std::function<void()>> close_callbacks_;  // run once after closed_ turns true
  std::atomic<uint64_t> next_request_id_{1};
};

}  // namespace moe
