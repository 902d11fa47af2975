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
// - Transport: plain TCP, or TLS (boost::asio::ssl::stream over the same socket) when a TlsContext is
//   attached to the io_context (see tls_context.h): connect() finishes the client handshake before it
//   returns; a server connection handshakes before reading its first frame. Nothing else differs.
// - Server role bounds (ConnectionPolicy): past the budget of in-flight bytes (requests not answered +
//   replies not written) no further request is read until replies drain; an idle connection is closed.
//
// - Or UCX (ucx_stream.h): connect_ucx() / adopt() carry the same frames over a UCX endpoint, with the
//   same code for everything above the bytes. UCX connections have no TLS.
//
// All socket work runs on the connection's strand; the read loop keeps the connection alive until the
// socket closes, so an owner must call close() (Server::stop closes its own).
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
#include <variant>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>

#include "runtime/net/connection_policy.h"
#include "runtime/net/tls_context.h"
#include "runtime/net/ucx_stream.h"
#include "runtime/wire/framing.h"
#include "runtime/wire/moe.capnp.h"

namespace moe {

class Connection;

// One request a server connection has read and not yet answered: its bytes count against the
// connection's budget until the reply is queued or the last Responder copy is gone.
class InFlightRequest {
 public:
  InFlightRequest(std::weak_ptr<Connection> connection, size_t bytes)
      : connection_(std::move(connection)), bytes_(bytes) {}
  ~InFlightRequest() { release(); }
  InFlightRequest(const InFlightRequest&) = delete;
  InFlightRequest& operator=(const InFlightRequest&) = delete;
  void release();

 private:
  std::weak_ptr<Connection> connection_;
  size_t bytes_;
  std::atomic<bool> released_{false};
};

// Replies to one incoming request. Cheap to copy; safe to use from any thread, after the handler has
// returned. Replying on a closed connection does nothing (returns false).
class Responder {
 public:
  Responder(std::weak_ptr<Connection> connection, uint64_t request_id,
            std::shared_ptr<InFlightRequest> in_flight = nullptr)
      : connection_(std::move(connection)), request_id_(request_id), in_flight_(std::move(in_flight)) {}

  uint64_t request_id() const { return request_id_; }
  // The connection the request came on (expired once it is gone): lets a service tie state to it
  // and learn of its closing through Connection::on_close.
  const std::weak_ptr<Connection>& connection() const { return connection_; }
  // Sets the reply's requestId and sends it. A reply over the frame limits is replaced by an
  // `internal` error reply (and logged), so the peer is never left waiting.
  bool reply(capnp::MessageBuilder& message) const;
  // The same, taking the message: its segments are written as they are (a gathered write, no flat copy).
  bool reply(std::unique_ptr<capnp::MessageBuilder> message) const;
  bool reply_error(wire::ErrorCode code, const std::string& message, uint64_t current_epoch = 0) const;
  // Keeps `hold` alive until the reply has been written to the socket (or the connection has closed, or
  // every copy of this Responder is gone without a reply): a service counts a request as in flight until
  // then by releasing its count in `hold`'s deleter.
  void hold_until_written(std::shared_ptr<void> hold) { hold_ = std::move(hold); }

 private:
  bool send_reply(kj::Array<capnp::word> frame) const;
  bool send_reply(SegmentedFrame frame) const;

  std::weak_ptr<Connection> connection_;
  uint64_t request_id_;
  std::shared_ptr<InFlightRequest> in_flight_;
  std::shared_ptr<void> hold_;
};

using RequestHandler = std::function<void(Frame request, Responder responder)>;
// Called exactly once: with the reply frame (error == nullptr), or with the error and an empty frame.
// An `error` reply from the peer is a reply, not an error: see throw_if_error / expect_kind.
using ReplyCallback = std::function<void(std::exception_ptr error, Frame reply)>;

class Connection : public std::enable_shared_from_this<Connection> {
  struct Private {};

 public:
  using Socket = boost::asio::ip::tcp::socket;
  using TlsStream = boost::asio::ssl::stream<Socket>;
  using Clock = std::chrono::steady_clock;

  // Client side: resolves and connects, failing with NetError(ConnectFailed / ConnectTimeout) after
  // `timeout`; with TLS attached to `io`, also handshakes (a refused or failed handshake:
  // ConnectFailed naming the reason). Blocks the caller; do not call it on a thread of the pool.
  static std::shared_ptr<Connection> connect(boost::asio::io_context& io, const std::string& host, uint16_t port,
                                             std::chrono::milliseconds timeout, FrameLimits limits = {});
  static std::shared_ptr<Connection> connect(boost::asio::io_context& io, const std::string& host_port,
                                             std::chrono::milliseconds timeout, FrameLimits limits = {});
  // Server side: takes an accepted socket (its executor should be a strand), handshakes when `tls` is
  // set, and starts reading, bounded by `policy`.
  static std::shared_ptr<Connection> accept(Socket socket, FrameLimits limits, RequestHandler handler,
                                            ConnectionPolicy policy = {}, std::shared_ptr<TlsContext> tls = nullptr);

  // Client side over UCX: connects to a UcxListener at `host_port` (NetError ConnectFailed /
  // ConnectTimeout / BadAddress naming it); the connection's handlers run on `io`.
  static std::shared_ptr<Connection> connect_ucx(boost::asio::io_context& io, const std::string& host_port,
                                                 std::chrono::milliseconds timeout, FrameLimits limits = {});
  // A connected UCX stream: server role when `handler` is set (bounded by `policy`), client role otherwise.
  static std::shared_ptr<Connection> adopt(UcxStream stream, FrameLimits limits, RequestHandler handler,
                                           ConnectionPolicy policy);

  Connection(Private, Socket socket, FrameLimits limits, RequestHandler handler, ConnectionPolicy policy,
             std::shared_ptr<TlsContext> tls);
  Connection(Private, UcxStream stream, FrameLimits limits, RequestHandler handler, ConnectionPolicy policy);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Sends `message` (root: Envelope; its requestId is overwritten) and calls `done` once with the reply,
  // or with NetError(DeadlineExceeded) after `timeout`, or NetError(ConnectionClosed). On a closed
  // connection `done` runs at once, on the calling thread. Throws FrameError when the message is over
  // the frame limits. Thread-safe.
  void request_async(capnp::MessageBuilder& message, Clock::duration timeout, ReplyCallback done);
  // The same, taking the message: its segments are written as they are (a gathered write, no flat copy),
  // and it is freed once written.
  void request_async(std::unique_ptr<capnp::MessageBuilder> message, Clock::duration timeout, ReplyCallback done);
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
  bool tls() const { return tls_ != nullptr; }
  bool ucx() const { return std::holds_alternative<UcxStream>(stream_); }
  // Bytes counted against the budget now (requests being handled + replies not yet written).
  size_t in_flight_bytes() const { return in_flight_bytes_; }
  // True while the read loop waits for the budget to drain.
  bool reading_paused() const { return reading_paused_; }

 private:
  friend class Responder;
  friend class InFlightRequest;
  struct Pending {
    ReplyCallback done;
    std::shared_ptr<boost::asio::steady_timer> timer;
    wire::Envelope::Which kind;
  };

  void start();
  void client_handshake(const std::string& target, std::chrono::milliseconds timeout);
  // A frame to write, and what to keep alive until it is written (Responder::hold_until_written): a flat
  // frame in `words`, or (with `message`) the segment table in `words` followed by the message's segments.
  struct OutFrame {
    kj::Array<capnp::word> words;
    std::unique_ptr<capnp::MessageBuilder> message;
    size_t bytes = 0;
    std::shared_ptr<void> hold;
  };
  bool enqueue(kj::Array<capnp::word> frame, std::shared_ptr<void> hold = nullptr);
  bool enqueue(SegmentedFrame frame, std::shared_ptr<void> hold = nullptr);
  bool enqueue(OutFrame frame);
  // Registers request `id` (its kind, deadline and callback) and queues its frame.
  void send_request(OutFrame frame, uint64_t id, wire::Envelope::Which kind, Clock::duration timeout,
                    ReplyCallback done);
  void release_request(size_t bytes);  // any thread
  bool over_budget() const;
  bool pause_if_over_budget();  // strand only
  Socket& tcp_socket();
  // strand only:
  void server_handshake();
  void begin_reading();
  void resume_reading();
  void arm_idle_timer();
  void on_idle_timer();
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

  std::variant<Socket, TlsStream, UcxStream> stream_;
  std::shared_ptr<TlsContext> tls_;
  boost::asio::any_io_executor strand_;  // the socket's executor
  FrameLimits limits_;
  RequestHandler handler_;
  ConnectionPolicy policy_;
  std::string peer_;

  // Budget and idleness (server role).
  std::atomic<size_t> in_flight_bytes_{0};
  std::atomic<size_t> awaiting_handler_{0};  // requests read whose Responder has not answered yet
  std::atomic<bool> reading_paused_{false};
  std::shared_ptr<Connection> paused_self_;  // strand only: keeps a paused connection alive
  boost::asio::steady_timer idle_timer_;
  Clock::time_point last_activity_;  // strand only
  size_t writing_bytes_ = 0;         // strand only: bytes of the batch in flight

  // Read side (strand only).
  FrameDecoder decoder_;
  std::vector<std::byte> read_buffer_;
  bool stop_reading_ = false;
  std::atomic<bool> socket_closed_{false};  // written on the strand, read by socket_closed()

  // Write side: the queue is shared with every sending thread; the batch in flight is strand only.
  std::mutex write_mutex_;
  std::deque<OutFrame> write_queue_;
  bool write_scheduled_ = false;
  std::vector<OutFrame> writing_;
  bool close_after_flush_ = false;

  // Requests waiting for a reply.
  mutable std::mutex pending_mutex_;
  std::unordered_map<uint64_t, Pending> pending_;
  bool closed_ = false;
  std::vector<std::function<void()>> close_callbacks_;  // run once after closed_ turns true
  std::atomic<uint64_t> next_request_id_{1};
};

}  // namespace moe
