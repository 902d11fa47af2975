// Helpers for the net tests: requests that carry a number, a handler that holds requests until the test
// releases them (to reply late, from another thread, in any order), and a raw blocking socket for
// sending bytes no Connection would send.
#pragma once

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <capnp/message.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/net/connection.h"
#include "runtime/wire/envelope_util.h"
#include "runtime/wire/framing.h"

namespace moe::test {

using namespace std::chrono_literals;

// A heartbeat request whose workerId carries `value` (any small message would do).
inline void make_request(capnp::MallocMessageBuilder& message, uint32_t value) {
  auto heartbeat = message.initRoot<wire::Envelope>().initHeartbeat();
  heartbeat.setWorkerId(value);
}

inline uint32_t request_value(const Frame& frame) { return frame.envelope().getHeartbeat().getWorkerId(); }

// The reply to a request carrying `value`: a heartbeatReply whose leaseMs is value * 2 + 1.
inline bool reply_to(const Responder& responder, uint32_t value) {
  capnp::MallocMessageBuilder message;
  message.initRoot<wire::Envelope>().initHeartbeatReply().setLeaseMs(value * 2 + 1);
  return responder.reply(message);
}

inline uint32_t reply_value(const Frame& frame) {
  expect_kind(frame.envelope(), wire::Envelope::HEARTBEAT_REPLY);
  return frame.envelope().getHeartbeatReply().getLeaseMs();
}

// Replies at once.
inline RequestHandler echo_handler() {
  return [](Frame request, Responder responder) { reply_to(responder, request_value(request)); };
}

// Keeps every request until the test takes them.
class HeldRequests {
 public:
  RequestHandler handler() {
    return [this](Frame request, Responder responder) {
      std::lock_guard lock(mutex_);
      held_.push_back({request_value(request), responder});
      changed_.notify_all();
    };
  }
  struct Held {
    uint32_t value;
    Responder responder;
  };
  // Waits (bounded) until `count` requests are held, and takes them.
  std::vector<Held> take(size_t count, std::chrono::milliseconds timeout = 5000ms) {
    std::unique_lock lock(mutex_);
    bool ok = changed_.wait_for(lock, timeout, [&] { return held_.size() >= count; });
    EXPECT_TRUE(ok) << "only " << held_.size() << " of " << count << " requests arrived";
    auto out = std::move(held_);
    held_.clear();
    return out;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<Held> held_;
};

// A blocking client socket with its own io_context.
class RawSocket {
 public:
  explicit RawSocket(uint16_t port) : socket_(io_) {
    socket_.connect({boost::asio::ip::make_address("127.0.0.1"), port});
  }
  void write(std::span<const std::byte> bytes) { boost::asio::write(socket_, boost::asio::buffer(bytes.data(), bytes.size())); }
  void write(const std::string& text) { boost::asio::write(socket_, boost::asio::buffer(text)); }
  void shutdown_send() { socket_.shutdown(boost::asio::ip::tcp::socket::shutdown_send); }
  // Shuts both directions down (a write blocked on another thread returns with an error) and closes.
  void close() {
    boost::system::error_code ignored;
    socket_.shutdown(boost::asio::ip::tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }
  // Reads one frame (blocking).
  Frame read_frame() {
    FrameDecoder decoder;
    std::vector<std::byte> buffer(4096);
    while (!decoder.has_output()) {
      size_t n = socket_.read_some(boost::asio::buffer(buffer.data(), buffer.size()));
      decoder.feed(std::span(buffer).first(n));
    }
    return decoder.pop();
  }
  // Reads frames one after another (blocking), keeping bytes past a frame for the next one.
  Frame read_next_frame() {
    std::vector<std::byte> buffer(64 * 1024);
    while (!stream_decoder_.has_output()) {
      size_t n = socket_.read_some(boost::asio::buffer(buffer.data(), buffer.size()));
      stream_decoder_.feed(std::span(buffer).first(n));
    }
    return stream_decoder_.pop();
  }
  // True when the server closed the connection (read hits EOF or a reset) within `timeout`.
  bool closed_by_peer(std::chrono::milliseconds timeout = 5000ms) {
    socket_.non_blocking(true);
    auto deadline = std::chrono::steady_clock::now() + timeout;
    std::byte byte;
    while (std::chrono::steady_clock::now() < deadline) {
      boost::system::error_code ec;
      socket_.read_some(boost::asio::buffer(&byte, 1), ec);
      if (ec == boost::asio::error::would_block) {
        std::this_thread::sleep_for(5ms);
        continue;
      }
      if (ec) return true;  // eof or reset
    }
    return false;
  }

 private:
  boost::asio::io_context io_;
  boost::asio::ip::tcp::socket socket_;
  FrameDecoder stream_decoder_;
};

// Waits (bounded) until `condition` holds.
template <typename F>
bool eventually(F condition, std::chrono::milliseconds timeout = 5000ms) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(2ms);
  }
  return condition();
}

}  // namespace moe::test
