// Cached connections of a client: one Connection per peer address, opened on first use, reopened after
// it closed. Many requests share one connection. Thread-safe; connecting to one peer does not block
// requests to others.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "runtime/net/connection.h"
#include "runtime/net/data_link.h"
#include "runtime/net/io_pool.h"

namespace moe {

class PeerLinks {
 public:
  // `data`: how connections are made (data_link.h): TCP, or UCX for the forward path to workers.
  PeerLinks(IoPool& pool, std::chrono::milliseconds connect_timeout, FrameLimits limits, DataLinkOptions data = {});
  ~PeerLinks();  // closes every connection
  PeerLinks(const PeerLinks&) = delete;
  PeerLinks& operator=(const PeerLinks&) = delete;

  // An open connection to `address` ("host:port"); throws NetError (ConnectFailed / ConnectTimeout /
  // BadAddress) naming the address. Blocks while connecting; never call it on an io pool thread.
  std::shared_ptr<Connection> get(const std::string& address);
  // Closes the cached connection to `address` (pending requests on it fail), if any.
  void drop(const std::string& address);
  void close_all();

 private:
  struct Slot {
    std::mutex connect_mutex;
    std::shared_ptr<Connection> connection;  // guarded by connect_mutex
  };
  std::shared_ptr<Slot> slot(const std::string& address);

  IoPool& pool_;
  std::chrono::milliseconds connect_timeout_;
  FrameLimits limits_;
  DataLinkOptions data_;
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<Slot>> slots_;
};

// Sends a request on `connection` and waits for its reply. Throws NetError on a closed connection or a
// timeout and RemoteError on an `error` reply; otherwise checks that the reply is `expected`. Sets the
// request's Envelope.clusterToken to `cluster_token` when that is not empty.
Frame call_peer(Connection& connection, capnp::MessageBuilder& request, std::chrono::milliseconds timeout,
                wire::Envelope::Which expected, std::string_view cluster_token = {});

}  // namespace moe
