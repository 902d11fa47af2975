// Test helper: sends raw words over a bare UCX endpoint (bytes no Connection would send) to a UCX
// listener and decodes the one frame that comes back. Used by the UCX unit and integration tests.
#pragma once

#include <chrono>
#include <cstdint>
#include <future>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "runtime/net/ucx_context.h"
#include "runtime/net/ucx_stream.h"
#include "runtime/wire/framing.h"

namespace moe::test {

inline Frame raw_ucx_exchange(const std::string& host, uint16_t port, const std::vector<uint32_t>& words) {
  using namespace std::chrono_literals;
  const std::string where = host + ":" + std::to_string(port);
  auto raw = UcxEndpoint::connect(UcxContext::instance(), host, port, 5000ms);
  std::promise<boost::system::error_code> sent;
  raw->send({{words.data(), words.size() * 4}}, [&](boost::system::error_code ec, size_t) { sent.set_value(ec); });
  EXPECT_FALSE(sent.get_future().get());
  FrameDecoder decoder{FrameLimits{}};
  std::vector<std::byte> buffer(4096);
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!decoder.has_output() && std::chrono::steady_clock::now() < deadline) {
    std::promise<std::pair<boost::system::error_code, size_t>> got;
    raw->receive(buffer.data(), buffer.size(), [&](boost::system::error_code ec, size_t n) { got.set_value({ec, n}); });
    auto [ec, n] = got.get_future().get();
    if (ec) throw std::runtime_error("raw UCX receive from " + where + " failed: " + ec.message());
    decoder.feed(std::span<const std::byte>(buffer.data(), n));
  }
  raw->close();
  if (!decoder.has_output()) throw std::runtime_error("no reply from " + where + " within 5 s");
  return decoder.pop();
}

}  // namespace moe::test
