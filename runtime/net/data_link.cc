// connect_data_link: TCP straight, or UCX after asking the worker where (see data_link.h).
#include "runtime/net/data_link.h"

#include <stdexcept>

#include <capnp/message.h>

#include "runtime/net/net_error.h"
#include "runtime/wire/cluster_auth.h"
#include "runtime/wire/envelope_util.h"

namespace moe {

DataTransport parse_data_transport(const std::string& text) {
  if (text == "tcp") return DataTransport::Tcp;
  if (text == "ucx") return DataTransport::Ucx;
  throw std::invalid_argument("--transport must be tcp or ucx, got '" + text + "'");
}

const char* data_transport_name(DataTransport transport) { return transport == DataTransport::Ucx ? "ucx" : "tcp"; }

namespace {

// The worker's UCX address, asked over TCP.
std::string ask_ucx_address(boost::asio::io_context& io, const std::string& address, std::chrono::milliseconds timeout,
                            const FrameLimits& limits, const std::string& token) {
  auto tcp = Connection::connect(io, address, timeout, limits);
  capnp::MallocMessageBuilder message;
  message.initRoot<wire::Envelope>().setGetTransports();
  set_cluster_token(message, token);
  Frame reply;
  try {
    reply = tcp->request(message, timeout).get();
  } catch (...) {
    tcp->close();
    throw;
  }
  tcp->close();
  auto envelope = reply.envelope();
  if (envelope.isError()) {
    const auto error = envelope.getError();
    if (error.getCode() == wire::ErrorCode::BAD_REQUEST) {
      throw NetError(NetError::Kind::TransportUnavailable,
                     "worker " + address + " does not offer UCX (it does not know getTransports: an older "
                     "moe-worker?): " + error.getMessage().cStr() + "; use --transport tcp");
    }
    throw_if_error(envelope);
  }
  expect_kind(envelope, wire::Envelope::TRANSPORTS);
  std::string ucx = envelope.getTransports().getUcx().cStr();
  if (ucx.empty()) {
    throw NetError(NetError::Kind::TransportUnavailable,
                   "worker " + address + " does not offer UCX (it was started without --transport ucx) but this "
                   "client asks for --transport ucx: start the workers with --transport ucx, or use --transport tcp");
  }
  return ucx;
}

}  // namespace

std::shared_ptr<Connection> connect_data_link(boost::asio::io_context& io, const std::string& address,
                                              std::chrono::milliseconds timeout, const FrameLimits& limits,
                                              const DataLinkOptions& options) {
  if (options.transport == DataTransport::Tcp) return Connection::connect(io, address, timeout, limits);
  if (io_tls(io)) {
    throw NetError(NetError::Kind::TransportUnavailable,
                   "--transport ucx carries no TLS, and this client has TLS on: use --transport tcp with TLS");
  }
  const std::string ucx = ask_ucx_address(io, address, timeout, limits, options.cluster_token);
  try {
    return Connection::connect_ucx(io, ucx, timeout, limits);
  } catch (const NetError& e) {
    throw NetError(e.kind(), "worker " + address + " over UCX at " + ucx + ": " + e.what());
  }
}

}  // namespace moe
