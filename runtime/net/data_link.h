// Which transport a client's data path (forward requests to workers and their replies) takes: TCP to
// the worker's address, or UCX. Control traffic (coordinator, registration, heartbeats, placement,
// metadata) stays on TCP either way.
//
// Over UCX the client first asks the worker, over TCP and with the cluster token like any request,
// where its UCX listener is (getTransports -> transports.ucx: "host:port"), then connects there. A
// worker started without --transport ucx answers with no UCX address: the client fails with
// NetError(TransportUnavailable) naming the worker, and does not fall back to TCP behind the user's back.
#pragma once

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <memory>
#include <string>

#include "runtime/net/connection.h"

namespace moe {

enum class DataTransport { Tcp, Ucx };

// "tcp" or "ucx"; throws std::invalid_argument naming the flag and the value otherwise.
DataTransport parse_data_transport(const std::string& text);
const char* data_transport_name(DataTransport transport);

struct DataLinkOptions {
  DataTransport transport = DataTransport::Tcp;
  std::string cluster_token;  // sent with the getTransports question (UCX)
};

// A client connection for forward requests to the worker at `address` ("host:port", its TCP address).
// Throws NetError (ConnectFailed / ConnectTimeout / BadAddress / TransportUnavailable) naming it.
std::shared_ptr<Connection> connect_data_link(boost::asio::io_context& io, const std::string& address,
                                              std::chrono::milliseconds timeout, const FrameLimits& limits,
                                              const DataLinkOptions& options);

}  // namespace moe
