// Accepts UCX connections on HOST:PORT (a UCP sockaddr listener; port 0 picks a free one) and hands
// each to a Server (Server::adopt), which serves it exactly as a TCP connection: same handler (so the
// cluster token is checked in the same place), frame limits, per-connection budget, idle timeout,
// connection cap, and stop(). A worker started with --transport ucx runs one beside its TCP Server and
// tells clients where it is (getTransports).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>

namespace moe {

class Server;

class UcxListener {
 public:
  // Listens at once; throws NetError(ListenFailed) naming the address and the UCX status.
  UcxListener(boost::asio::io_context& io, Server& server, const std::string& host, uint16_t port);
  ~UcxListener();  // stops accepting (connections already adopted stay with the Server)
  UcxListener(const UcxListener&) = delete;
  UcxListener& operator=(const UcxListener&) = delete;

  uint16_t port() const { return port_; }

 private:
  struct State;
  std::shared_ptr<State> state_;
  uint16_t port_ = 0;
};

}  // namespace moe
