// One UCX endpoint seen as a byte stream with Boost.Asio's AsyncReadStream / AsyncWriteStream shape, so
// that Connection carries its frames over UCX with the very code it uses over TCP (framing, limits,
// deadlines, budgets, token checks in the handler): only the bytes move differently.
//
// It uses the UCP stream API (ucp_stream_send_nbx; ucp_stream_recv_data_nb when ucp_stream_worker_poll
// says data came, copied into the reader's buffer: no receive is left posted inside UCX, so closing
// never leaves UCX writing into a buffer its owner has freed): frames are already
// self-delimiting (Cap'n Proto stream framing decoded by FrameDecoder, with its limits checked before
// anything is allocated), so a byte stream keeps one decoder for both transports. Active messages would
// hand over whole messages but would need a second decoder and a second budget path; tag matching
// buys nothing when one endpoint carries one ordered conversation.
//
// Every UCP call runs on UcxContext's progress thread; completions are posted to the stream's executor
// (the Connection's strand). Like asio's own I/O objects, a stream's operations go with its io_context:
// when the io_context shuts down, the handlers UCX still holds (the receive waiting for data, sends in
// flight) are destroyed there without being called, and no completion is posted to it afterwards (it
// would be freed memory: the progress thread outlives every io_context). Errors are boost::system::error_code in ucx_category() (the UCS status);
// a peer that vanished (kill -9, closed endpoint) reads as connection_reset.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/post.hpp>
#include <boost/system/error_code.hpp>
#include <ucp/api/ucp.h>

#include "runtime/net/ucx_context.h"

namespace moe {

const boost::system::error_category& ucx_category();
boost::system::error_code ucx_error(ucs_status_t status);

// The UCP endpoint; lives as long as a stream or an operation refers to it.
class UcxEndpoint : public std::enable_shared_from_this<UcxEndpoint>, private UcxStreamReady {
 public:
  using Done = std::function<void(boost::system::error_code, size_t)>;

  UcxEndpoint(UcxContext& context, std::string peer) : context_(context), peer_(std::move(peer)) {}
  ~UcxEndpoint();

  // Client side: connects to a UcxListener at host:port, waiting until the endpoint is wired up (or
  // throws NetError ConnectFailed / ConnectTimeout naming the address).
  static std::shared_ptr<UcxEndpoint> connect(UcxContext& context, const std::string& host, uint16_t port,
                                              std::chrono::milliseconds timeout);
  // Server side: accepts a connection request (progress thread only).
  static std::shared_ptr<UcxEndpoint> accept(UcxContext& context, ucp_conn_request_h request);

  // Each calls `done` once, on the progress thread (unless abandoned first). One receive at a time.
  void receive(void* data, size_t size, Done done);
  void send(std::vector<std::pair<const void*, size_t>> parts, Done done);
  // Idempotent. A pending receive completes with operation_aborted before close() returns (unless
  // called on the progress thread, where it happens inline); the endpoint itself lingers (kLinger)
  // so that the peer can read what was sent last, then disconnects.
  void close();
  const std::string& peer() const { return peer_; }
  // Takes back the `done` of the pending receive and of every send in flight, which then complete
  // without calling anyone; the caller destroys them (off the progress thread). For the shutdown of the
  // io_context those handlers post to. Not on the progress thread.
  std::vector<Done> abandon();

  struct Op;  // one UCP operation in flight (ucx_stream.cc)

 private:
  struct PendingRead {
    void* data;
    size_t size;
    Done done;
  };
  static void on_error(void* arg, ucp_ep_h ep, ucs_status_t status);
  static void on_sent(void* request, ucs_status_t status, void* user_data);
  static void complete(Op* op, ucs_status_t status, size_t bytes);
  static ucp_request_param_t request_param(Op* op);
  ucp_ep_params_t params(uint64_t extra_fields);
  // progress thread:
  void on_stream_ready() override;
  void fill_read();
  void fail_read(boost::system::error_code ec);
  void release_fragment();
  void begin_close();
  void close_now();

  UcxContext& context_;
  std::string peer_;
  ucp_ep_h ep_ = nullptr;          // progress thread only
  ucs_status_t failed_ = UCS_OK;   // progress thread only
  bool closing_ = false;           // progress thread only
  bool closed_ = false;            // progress thread only
  std::unique_ptr<PendingRead> read_;  // progress thread only
  void* fragment_ = nullptr;       // progress thread only: UCX's receive buffer being read
  const std::byte* fragment_at_ = nullptr;
  size_t fragment_left_ = 0;
  std::unordered_set<Op*> sends_;  // progress thread only: sends in flight, for abandon()
};

class UcxStream {
 public:
  using executor_type = boost::asio::any_io_executor;

  // Ties the endpoint's operations to the executor's io_context (see the top of this file).
  UcxStream(std::shared_ptr<UcxEndpoint> endpoint, executor_type executor);
  UcxStream(UcxStream&&) = default;
  UcxStream& operator=(UcxStream&&) = delete;
  ~UcxStream() {
    if (endpoint_) endpoint_->close();
  }

  executor_type get_executor() const { return executor_; }
  const std::string& peer() const { return endpoint_->peer(); }
  void close() { endpoint_->close(); }

  template <typename MutableBufferSequence, typename Handler>
  void async_read_some(const MutableBufferSequence& buffers, Handler&& handler) {
    boost::asio::mutable_buffer first = *boost::asio::buffer_sequence_begin(buffers);
    endpoint_->receive(first.data(), first.size(), completion(std::forward<Handler>(handler)));
  }

  template <typename ConstBufferSequence, typename Handler>
  void async_write_some(const ConstBufferSequence& buffers, Handler&& handler) {
    std::vector<std::pair<const void*, size_t>> parts;
    for (auto it = boost::asio::buffer_sequence_begin(buffers); it != boost::asio::buffer_sequence_end(buffers); ++it) {
      boost::asio::const_buffer b(*it);
      if (b.size() != 0) parts.emplace_back(b.data(), b.size());
    }
    endpoint_->send(std::move(parts), completion(std::forward<Handler>(handler)));
  }

 private:
  template <typename Handler>
  UcxEndpoint::Done completion(Handler&& handler) {
    auto shared = std::make_shared<std::decay_t<Handler>>(std::forward<Handler>(handler));
    return [shared, executor = executor_](boost::system::error_code ec, size_t n) {
      boost::asio::post(executor, [shared, ec, n]() mutable { std::move (*shared)(ec, n); });
    };
  }

  std::shared_ptr<UcxEndpoint> endpoint_;
  executor_type executor_;
};

}  // namespace moe
