// UcxListener: ucp_listener_create and the connection handler that adopts endpoints into a Server.
#include "runtime/net/ucx_listener.h"

#include <netdb.h>
#include <sys/socket.h>

#include <cstring>
#include <future>

#include <boost/asio/strand.hpp>

#include "runtime/net/address.h"
#include "runtime/net/connection.h"
#include "runtime/net/net_error.h"
#include "runtime/net/net_log.h"
#include "runtime/net/server.h"
#include "runtime/net/ucx_context.h"
#include "runtime/net/ucx_stream.h"

namespace moe {

struct UcxListener::State {
  boost::asio::io_context& io;
  Server& server;
  ucp_listener_h listener = nullptr;  // progress thread only
  bool stopped = false;               // progress thread only

  static void on_connection(ucp_conn_request_h request, void* arg) {
    auto* self = static_cast<State*>(arg);
    UcxContext& context = UcxContext::instance();
    if (self->stopped) {
      ucp_listener_reject(self->listener, request);
      return;
    }
    auto endpoint = UcxEndpoint::accept(context, request);
    if (!endpoint) return;
    auto strand = boost::asio::make_strand(self->io);
    auto connection = self->server.adopt(
        [&](const FrameLimits& limits, RequestHandler handler, const ConnectionPolicy& policy) {
          return Connection::adopt(UcxStream(endpoint, strand), limits, std::move(handler), policy);
        },
        endpoint->peer());
    if (!connection) endpoint->close();
  }
};

UcxListener::UcxListener(boost::asio::io_context& io, Server& server, const std::string& host, uint16_t port)
    : state_(std::make_shared<State>(State{io, server})) {
  const std::string target = HostPort{host, port}.to_string();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
  if (rc != 0 || found == nullptr) {
    throw NetError(NetError::Kind::ListenFailed, "cannot listen (UCX) on " + target + ": " + gai_strerror(rc));
  }
  sockaddr_storage address{};
  const socklen_t length = found->ai_addrlen;
  std::memcpy(&address, found->ai_addr, length);
  freeaddrinfo(found);

  UcxContext& context = UcxContext::instance();
  std::promise<std::pair<ucs_status_t, uint16_t>> result;
  auto future = result.get_future();
  context.post([&, state = state_] {
    ucp_listener_params_t params{};
    params.field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR | UCP_LISTENER_PARAM_FIELD_CONN_HANDLER;
    params.sockaddr.addr = reinterpret_cast<const sockaddr*>(&address);
    params.sockaddr.addrlen = length;
    params.conn_handler.cb = &State::on_connection;
    params.conn_handler.arg = state.get();
    ucs_status_t status = ucp_listener_create(context.worker(), &params, &state->listener);
    uint16_t bound = 0;
    if (status == UCS_OK) {
      ucp_listener_attr_t attr{};
      attr.field_mask = UCP_LISTENER_ATTR_FIELD_SOCKADDR;
      status = ucp_listener_query(state->listener, &attr);
      if (status == UCS_OK) {
        const auto& sa = attr.sockaddr;
        bound = sa.ss_family == AF_INET6 ? ntohs(reinterpret_cast<const sockaddr_in6*>(&sa)->sin6_port)
                                         : ntohs(reinterpret_cast<const sockaddr_in*>(&sa)->sin_port);
      }
    }
    result.set_value({status, bound});
  });
  auto [status, bound] = future.get();
  if (status != UCS_OK) {
    throw NetError(NetError::Kind::ListenFailed, ucx_failure("listen on " + target, status));
  }
  port_ = bound;
}

UcxListener::~UcxListener() {
  // The State stays alive until the progress thread has destroyed the listener (no callback after).
  std::promise<void> done;
  auto future = done.get_future();
  UcxContext::instance().post([state = state_, &done] {
    state->stopped = true;
    if (state->listener) ucp_listener_destroy(state->listener);
    state->listener = nullptr;
    done.set_value();
  });
  future.wait();
}

}  // namespace moe
