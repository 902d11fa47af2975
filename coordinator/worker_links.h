// The coordinator's own connections to workers (to their registered listen address), opened on first
// use and reopened when closed. get() and drop() from the control thread; close_all() from any thread (stop:
// it fails the requests the control thread waits on, so it returns at once).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include <boost/asio/io_context.hpp>

#include "runtime/net/connection.h"

namespace moe {

class WorkerLinks {
 public:
  WorkerLinks(boost::asio::io_context& io, std::chrono::milliseconds connect_timeout)
      : io_(io), connect_timeout_(connect_timeout) {}
  ~WorkerLinks() { close_all(); }

  // An open connection to the worker; throws NetError when it cannot connect.
  std::shared_ptr<Connection> get(uint32_t worker_id, const std::string& address);
  void drop(uint32_t worker_id);
  void close_all();

 private:
  struct Link {
    std::string address;
    std::shared_ptr<Connection> connection;
  };
  boost::asio::io_context& io_;
  std::chrono::milliseconds connect_timeout_;
  std::mutex mutex_;
  bool closed_ = false;  // close_all() ran: get() refuses
  std::map<uint32_t, Link> links_;
};

}  // namespace moe
