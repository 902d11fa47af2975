// UcxEndpoint: connect / accept, stream send and receive, close and peer failure (see ucx_stream.h).
#include "runtime/net/ucx_stream.h"

#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <future>
#include <mutex>

#include <boost/asio/error.hpp>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/query.hpp>

#include "runtime/net/address.h"
#include "runtime/net/net_error.h"
#include "runtime/net/net_log.h"
#include "runtime/net/ucx_context.h"

namespace moe {

namespace {

constexpr std::chrono::milliseconds kLinger{500};

class UcxCategory : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "ucx"; }
  std::string message(int value) const override {
    return std::string("UCX: ") + ucs_status_string(static_cast<ucs_status_t>(value));
  }
};

// The UcxEndpoints whose streams post to one io_context; at its shutdown, their handlers are taken back
// and destroyed there (UcxEndpoint::abandon), as asio destroys the handlers of its own I/O objects.
class UcxStreamService : public boost::asio::execution_context::service {
 public:
  static inline boost::asio::execution_context::id id;

  explicit UcxStreamService(boost::asio::execution_context& context) : service(context) {}

  void add(const std::shared_ptr<UcxEndpoint>& endpoint) {
    std::lock_guard lock(mutex_);
    std::erase_if(endpoints_, [](const std::weak_ptr<UcxEndpoint>& e) { return e.expired(); });
    endpoints_.push_back(endpoint);
  }

 private:
  void shutdown() override {
    std::vector<std::weak_ptr<UcxEndpoint>> endpoints;
    {
      std::lock_guard lock(mutex_);
      endpoints.swap(endpoints_);
    }
    for (auto& weak : endpoints) {
      auto endpoint = weak.lock();
      if (!endpoint) continue;
      // Destroyed here, after abandon() returned: a handler may hold the last reference to its Connection,
      // whose UcxStream then closes the endpoint (which waits on the progress thread).
      std::vector<UcxEndpoint::Done> handlers = endpoint->abandon();
      endpoint.reset();
      handlers.clear();
    }
  }

  std::mutex mutex_;
  std::vector<std::weak_ptr<UcxEndpoint>> endpoints_;
};

}  // namespace

// One operation in flight: what to call when it completes, the IOV it sends from, and (a stream send)
// the endpoint that lists it in sends_.
struct UcxEndpoint::Op {
  UcxEndpoint::Done done;
  std::vector<ucp_dt_iov_t> iov;
  size_t bytes = 0;
  std::shared_ptr<UcxEndpoint> sender;
};

void UcxEndpoint::complete(Op* op, ucs_status_t status, size_t bytes) {
  if (op->sender) op->sender->sends_.erase(op);
  op->done(status == UCS_OK ? boost::system::error_code{} : ucx_error(status), status == UCS_OK ? bytes : 0);
  delete op;
}

void UcxEndpoint::on_sent(void* request, ucs_status_t status, void* user_data) {
  auto* op = static_cast<Op*>(user_data);
  complete(op, status, op->bytes);
  ucp_request_free(request);
}

ucp_request_param_t UcxEndpoint::request_param(Op* op) {
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  param.cb.send = on_sent;
  param.user_data = op;
  return param;
}

namespace {

std::string sockaddr_text(const sockaddr_storage& address) {
  char host[NI_MAXHOST];
  char port[NI_MAXSERV];
  if (getnameinfo(reinterpret_cast<const sockaddr*>(&address), sizeof(address), host, sizeof(host), port, sizeof(port),
                  NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return "(unknown peer)";
  }
  return HostPort{host, static_cast<uint16_t>(std::stoi(port))}.to_string();
}

}  // namespace

const boost::system::error_category& ucx_category() {
  static UcxCategory category;
  return category;
}

boost::system::error_code ucx_error(ucs_status_t status) {
  switch (status) {
    case UCS_OK:
      return {};
    case UCS_ERR_CANCELED:
      return boost::asio::error::operation_aborted;
    case UCS_ERR_CONNECTION_RESET:
    case UCS_ERR_ENDPOINT_TIMEOUT:
    case UCS_ERR_NOT_CONNECTED:
    case UCS_ERR_UNREACHABLE:
      return boost::asio::error::connection_reset;
    default:
      return {static_cast<int>(status), ucx_category()};
  }
}

ucp_ep_params_t UcxEndpoint::params(uint64_t extra_fields) {
  ucp_ep_params_t p{};
  p.field_mask = extra_fields | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE | UCP_EP_PARAM_FIELD_ERR_HANDLER |
                 UCP_EP_PARAM_FIELD_USER_DATA;
  p.user_data = static_cast<UcxStreamReady*>(this);
  p.err_mode = UCP_ERR_HANDLING_MODE_PEER;
  p.err_handler.cb = &UcxEndpoint::on_error;
  p.err_handler.arg = this;
  return p;
}

UcxEndpoint::~UcxEndpoint() = default;

std::shared_ptr<UcxEndpoint> UcxEndpoint::connect(UcxContext& context, const std::string& host, uint16_t port,
                                                  std::chrono::milliseconds timeout) {
  const std::string target = HostPort{host, port}.to_string();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
  if (rc != 0 || found == nullptr) {
    throw NetError(NetError::Kind::ConnectFailed, "UCX connect to " + target + ": cannot resolve: " + gai_strerror(rc));
  }
  sockaddr_storage address{};
  const socklen_t length = found->ai_addrlen;
  std::memcpy(&address, found->ai_addr, length);
  freeaddrinfo(found);

  auto endpoint = std::make_shared<UcxEndpoint>(context, "ucx:" + target);
  auto result = std::make_shared<std::promise<ucs_status_t>>();
  auto future = result->get_future();
  context.post([endpoint, address, length, result] {
    ucp_ep_params_t p = endpoint->params(UCP_EP_PARAM_FIELD_FLAGS | UCP_EP_PARAM_FIELD_SOCK_ADDR);
    p.flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER;
    p.sockaddr.addr = reinterpret_cast<const sockaddr*>(&address);
    p.sockaddr.addrlen = length;
    ucs_status_t status = ucp_ep_create(endpoint->context_.worker(), &p, &endpoint->ep_);
    if (status != UCS_OK) {
      endpoint->ep_ = nullptr;
      result->set_value(status);
      return;
    }
    // The endpoint is wired up (or has failed) when a flush completes.
    auto* op = new Op{[result](boost::system::error_code ec, size_t) {
                        result->set_value(ec ? (ec.category() == ucx_category() ? static_cast<ucs_status_t>(ec.value())
                                                                                 : UCS_ERR_UNREACHABLE)
                                             : UCS_OK);
                      },
                      {}, 0};
    ucp_request_param_t param = request_param(op);
    ucs_status_ptr_t request = ucp_ep_flush_nbx(endpoint->ep_, &param);
    if (request == nullptr) {
      complete(op, UCS_OK, 0);
    } else if (UCS_PTR_IS_ERR(request)) {
      complete(op, UCS_PTR_STATUS(request), 0);
    }
  });
  if (future.wait_for(timeout) != std::future_status::ready) {
    endpoint->close();
    throw NetError(NetError::Kind::ConnectTimeout,
                   "UCX connect to " + target + " timed out after " + std::to_string(timeout.count()) + " ms");
  }
  const ucs_status_t status = future.get();
  if (status != UCS_OK) {
    endpoint->close();
    throw NetError(NetError::Kind::ConnectFailed,
                   ucx_failure("connect to " + target + " (is a UcxListener there: moe-worker --transport ucx?)", status));
  }
  return endpoint;
}

std::shared_ptr<UcxEndpoint> UcxEndpoint::accept(UcxContext& context, ucp_conn_request_h request) {
  ucp_conn_request_attr_t attr{};
  attr.field_mask = UCP_CONN_REQUEST_ATTR_FIELD_CLIENT_ADDR;
  std::string peer = "(unknown peer)";
  if (ucp_conn_request_query(request, &attr) == UCS_OK) peer = sockaddr_text(attr.client_address);
  auto endpoint = std::make_shared<UcxEndpoint>(context, "ucx:" + peer);
  ucp_ep_params_t p = endpoint->params(UCP_EP_PARAM_FIELD_CONN_REQUEST);
  p.conn_request = request;
  const ucs_status_t status = ucp_ep_create(context.worker(), &p, &endpoint->ep_);
  if (status != UCS_OK) {
    endpoint->ep_ = nullptr;
    net_log(ucx_failure("accepting a connection from " + peer, status));
    return nullptr;
  }
  return endpoint;
}

void UcxEndpoint::on_error(void* arg, ucp_ep_h, ucs_status_t status) {
  auto* self = static_cast<UcxEndpoint*>(arg);
  self->failed_ = status;
  self->fail_read(ucx_error(status));
  // The failed endpoint must be closed (forced).
  self->close_now();
}

void UcxEndpoint::receive(void* data, size_t size, Done done) {
  context_.post([self = shared_from_this(), data, size, done = std::move(done)]() mutable {
    if (self->ep_ == nullptr || self->closing_) {
      done(self->failed_ != UCS_OK ? ucx_error(self->failed_) : boost::asio::error::operation_aborted, 0);
      return;
    }
    if (self->read_) {
      done(boost::asio::error::in_progress, 0);
      return;
    }
    self->read_ = std::make_unique<PendingRead>(PendingRead{data, size, std::move(done)});
    self->fill_read();
  });
}

void UcxEndpoint::on_stream_ready() { fill_read(); }

void UcxEndpoint::fill_read() {
  if (!read_ || ep_ == nullptr || closing_) return;
  // Fill the reader's buffer from as many received fragments as there are (a fragment is a few KiB on
  // shared memory: one completion per fragment would cost a thread hop each).
  size_t filled = 0;
  while (filled < read_->size) {
    if (fragment_left_ == 0) {
      release_fragment();
      size_t length = 0;
      ucs_status_ptr_t data = ucp_stream_recv_data_nb(ep_, &length);
      if (data == nullptr) break;  // nothing more yet: ucp_stream_worker_poll tells when
      if (UCS_PTR_IS_ERR(data)) {
        if (filled > 0) break;  // hand over what came; the error shows on the next read
        fail_read(ucx_error(UCS_PTR_STATUS(data)));
        return;
      }
      fragment_ = data;
      fragment_at_ = static_cast<const std::byte*>(data);
      fragment_left_ = length;
    }
    const size_t n = std::min(fragment_left_, read_->size - filled);
    std::memcpy(static_cast<std::byte*>(read_->data) + filled, fragment_at_, n);
    fragment_at_ += n;
    fragment_left_ -= n;
    filled += n;
    if (fragment_left_ == 0) release_fragment();
  }
  if (filled == 0) return;
  auto read = std::move(read_);
  read->done({}, filled);
}

void UcxEndpoint::fail_read(boost::system::error_code ec) {
  if (!read_) return;
  auto read = std::move(read_);
  read->done(ec, 0);
}

void UcxEndpoint::release_fragment() {
  if (fragment_ != nullptr && ep_ != nullptr) ucp_stream_data_release(ep_, fragment_);
  fragment_ = nullptr;
  fragment_at_ = nullptr;
  fragment_left_ = 0;
}

void UcxEndpoint::send(std::vector<std::pair<const void*, size_t>> parts, Done done) {
  context_.post([self = shared_from_this(), parts = std::move(parts), done = std::move(done)]() mutable {
    if (self->ep_ == nullptr) {
      done(self->failed_ != UCS_OK ? ucx_error(self->failed_) : boost::asio::error::operation_aborted, 0);
      return;
    }
    auto* op = new Op{std::move(done), {}, 0, self};
    op->iov.reserve(parts.size());
    for (auto& [data, size] : parts) {
      op->iov.push_back(ucp_dt_iov_t{const_cast<void*>(data), size});
      op->bytes += size;
    }
    ucp_request_param_t param = request_param(op);
    param.op_attr_mask |= UCP_OP_ATTR_FIELD_DATATYPE;
    param.datatype = ucp_dt_make_iov();
    ucs_status_ptr_t request = ucp_stream_send_nbx(self->ep_, op->iov.data(), op->iov.size(), &param);
    if (request == nullptr) {
      complete(op, UCS_OK, op->bytes);
    } else if (UCS_PTR_IS_ERR(request)) {
      complete(op, UCS_PTR_STATUS(request), 0);
    } else {
      self->sends_.insert(op);  // until on_sent
    }
  });
}

std::vector<UcxEndpoint::Done> UcxEndpoint::abandon() {
  std::vector<Done> handlers;
  auto take = [this, &handlers] {
    if (read_) handlers.push_back(std::move(read_->done));
    read_.reset();
    for (Op* op : sends_) {
      handlers.push_back(std::move(op->done));
      op->done = [](boost::system::error_code, size_t) {};
      op->sender.reset();  // not the last reference: the caller holds one
    }
    sends_.clear();
  };
  if (context_.on_progress_thread()) {  // an io_context destroyed from a UCX callback: no waiting on ourselves
    take();
    return handlers;
  }
  auto done = std::make_shared<std::promise<void>>();
  auto future = done->get_future();
  context_.post([self = shared_from_this(), &take, done] {
    take();
    done->set_value();
  });
  future.wait();
  return handlers;
}

UcxStream::UcxStream(std::shared_ptr<UcxEndpoint> endpoint, executor_type executor)
    : endpoint_(std::move(endpoint)), executor_(std::move(executor)) {
  boost::asio::use_service<UcxStreamService>(boost::asio::query(executor_, boost::asio::execution::context))
      .add(endpoint_);
}

void UcxEndpoint::close() {
  if (context_.on_progress_thread()) {
    begin_close();
    return;
  }
  auto done = std::make_shared<std::promise<void>>();
  auto future = done->get_future();
  context_.post([self = shared_from_this(), done] {
    self->begin_close();
    done->set_value();
  });
  future.wait();
}

void UcxEndpoint::begin_close() {
  if (closing_) return;
  closing_ = true;
  fail_read(boost::asio::error::operation_aborted);
  release_fragment();
  if (ep_ == nullptr) return;
  // A healthy endpoint lingers before it disconnects: a peer loses the bytes it has not read yet when
  // the endpoint goes (unlike a TCP FIN), and the last frame may be the badRequest reply it waits for.
  // Nothing is read meanwhile; a peer closing first ends it sooner (on_error).
  context_.post_after(kLinger, [self = shared_from_this()] { self->close_now(); });
}

void UcxEndpoint::close_now() {
  if (closed_ || ep_ == nullptr) {
    closed_ = closing_ = true;
    return;
  }
  closed_ = true;
  closing_ = true;
  release_fragment();
  ucp_ep_h ep = ep_;
  ep_ = nullptr;
  // A healthy endpoint flushes what was sent before it disconnects; a failed one is forced.
  auto* op = new Op{[keep = shared_from_this()](boost::system::error_code, size_t) {}, {}, 0};
  ucp_request_param_t param = request_param(op);
  param.op_attr_mask |= UCP_OP_ATTR_FIELD_FLAGS;
  param.flags = failed_ != UCS_OK ? UCP_EP_CLOSE_FLAG_FORCE : 0;
  ucs_status_ptr_t request = ucp_ep_close_nbx(ep, &param);
  if (request == nullptr || UCS_PTR_IS_ERR(request)) complete(op, UCS_OK, 0);
}

}  // namespace moe
