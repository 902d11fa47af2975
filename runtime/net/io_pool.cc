// io_context thread pool (see io_pool.h).
#include "runtime/net/io_pool.h"

#include <algorithm>
#include <exception>
#include <string>

#include "runtime/net/net_log.h"

namespace moe {

IoPool::IoPool(unsigned threads, std::shared_ptr<TlsContext> tls) : io_(static_cast<int>(std::max(threads, 1u))) {
  set_io_tls(io_, std::move(tls));
  work_.emplace(io_.get_executor());
  threads = std::max(threads, 1u);
  threads_.reserve(threads);
  for (unsigned i = 0; i < threads; ++i) {
    threads_.emplace_back([this] {
      for (;;) {
        try {
          io_.run();
          return;
        } catch (const std::exception& e) {
          // A handler threw: log it and keep the thread serving everyone else.
          net_log(std::string("handler threw on an io thread: ") + e.what());
        }
      }
    });
  }
}

IoPool::~IoPool() { stop(); }

bool IoPool::in_pool_thread() const {
  auto self = std::this_thread::get_id();
  return std::any_of(threads_.begin(), threads_.end(), [&](const std::thread& t) { return t.get_id() == self; });
}

void IoPool::stop() {
  work_.reset();
  io_.stop();
  auto self = std::this_thread::get_id();
  for (auto& t : threads_) {
    if (t.joinable() && t.get_id() != self) t.join();
  }
}

}  // namespace moe
