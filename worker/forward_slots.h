// The worker's bound on forward requests in flight (--max-queue): a request holds one slot from the
// moment it is accepted until its reply has been written to the socket, or its connection has closed,
// or it was dropped unanswered. So a client that never reads its replies keeps its slots, and once the
// bound is reached further forwards are answered `overloaded` (issue 12).
//
// A slot is a shared_ptr<void> whose deleter gives it back; it is handed to Responder::hold_until_written,
// so the connection's write queue keeps it until the reply is out. Slots may outlive the worker service
// (replies still queued on a connection): they share ownership of the count, and the observer (the
// metrics gauge) is detached before the service goes.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>

namespace moe {

class ForwardSlots : public std::enable_shared_from_this<ForwardSlots> {
  struct Private {};

 public:
  // `observe` gets the new count after every change, from any thread; it must not block.
  static std::shared_ptr<ForwardSlots> create(uint32_t max, std::function<void(size_t)> observe = nullptr);
  ForwardSlots(Private, uint32_t max, std::function<void(size_t)> observe);

  // A slot, or nullptr when `max` are held already.
  std::shared_ptr<void> try_acquire();
  size_t held() const { return held_.load(); }
  uint32_t max() const { return max_; }
  // No more calls to the observer after this returns.
  void detach_observer();

 private:
  void release();
  void notify();

  const uint32_t max_;
  std::atomic<size_t> held_{0};
  std::mutex observer_mutex_;
  std::function<void(size_t)> observe_;
};

}  // namespace moe
