// The owner of one boost::asio::io_context and the N threads that run it. Every Connection and Server
// lives on a pool; the pool must outlive them. stop() is idempotent and joins the threads; work still
// queued is dropped (its handlers are destroyed, which releases the connections they hold).
// Given a TlsContext, every connection made or accepted on the pool is mutual TLS (tls_context.h).
#pragma once

#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include "runtime/net/tls_context.h"

namespace moe {

class IoPool {
 public:
  explicit IoPool(unsigned threads = 1, std::shared_ptr<TlsContext> tls = nullptr);
  ~IoPool();
  IoPool(const IoPool&) = delete;
  IoPool& operator=(const IoPool&) = delete;

  boost::asio::io_context& context() { return io_; }
  std::shared_ptr<TlsContext> tls() { return io_tls(io_); }
  unsigned threads() const { return static_cast<unsigned>(threads_.size()); }
  // True on one of this pool's threads (where blocking waits on the pool would deadlock).
  bool in_pool_thread() const;
  // Stops the io_context and joins the threads. Called from a pool thread, it joins the others and
  // leaves the calling thread to the destructor, which must run on a thread outside the pool.
  void stop();

 private:
  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  std::vector<std::thread> threads_;
};

}  // namespace moe
