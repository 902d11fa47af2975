// The coordinator's own connections to workers (to their registered listen address), opened on first
// use and reopened when closed. Used from the control thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
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
  std::map<uint32_t, Link> links_;
};

}  // namespace moe
