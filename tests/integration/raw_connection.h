// A blocking TCP client for hostile-input tests: writes arbitrary bytes (valid frames, garbage, half
// frames) to a daemon and reads back whatever comes: one frame, or the connection closing. No part of
// the project's transport is used on the sending side, so nothing is validated before it leaves.
// Every read is bounded by a timeout.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstring>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <capnp/message.h>

#include "runtime/wire/framing.h"
#include "runtime/wire/moe.capnp.h"

namespace moe::integration {

class RawConnection {
 public:
  // Connects to "host:port"; throws std::runtime_error naming the address on failure.
  explicit RawConnection(const std::string& address);
  ~RawConnection();
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  // Writes every byte; false when the peer has closed (EPIPE / ECONNRESET), which a server that drops a
  // bad stream may do while we still write.
  bool write(std::span<const std::byte> bytes);
  bool write_words(std::span<const uint32_t> words);
  bool write_message(capnp::MessageBuilder& message);  // one well-formed frame
  void shutdown_write();                                // half-close: the peer reads EOF

  struct Reply {
    enum class Kind { Frame, Closed, Timeout } kind = Kind::Timeout;
    Frame frame;         // when kind == Frame
    std::string detail;  // what happened, for messages
  };
  // The next frame from the peer, or Closed (EOF, reset, or bytes that are not a valid frame), or Timeout.
  Reply read_reply(std::chrono::milliseconds timeout);
  // True when the peer closes the connection within `timeout` (frames it sends first are skipped).
  bool wait_closed(std::chrono::milliseconds timeout);

 private:
  int fd_ = -1;
  FrameDecoder decoder_;
};

// An f32 forwardRequest frame for layer 0: `tokens` rows of `hidden` values (a fixed small pattern), the
// first `routed` rows routed to `expert` with weight 1. For tests that write forwards without a client.
inline kj::Array<capnp::word> raw_forward_frame(uint64_t epoch, uint32_t hidden, uint32_t tokens, uint32_t routed,
                                                int32_t expert) {
  capnp::MallocMessageBuilder message;
  auto request = message.initRoot<wire::Envelope>().initForwardRequest();
  request.setEpoch(epoch);
  request.setLayer(0);
  request.setDtype(wire::DType::F32);
  request.setNumTokens(tokens);
  request.setHidden(hidden);
  auto data = request.initTokens(tokens * hidden * 4);
  std::vector<float> values(static_cast<size_t>(tokens) * hidden);
  for (size_t i = 0; i < values.size(); ++i) values[i] = 0.01f * static_cast<float>(i % 13) - 0.06f;
  std::memcpy(data.begin(), values.data(), values.size() * 4);
  auto token_index = request.initTokenIndex(routed);
  auto expert_id = request.initExpertId(routed);
  auto weight = request.initWeight(routed);
  for (uint32_t i = 0; i < routed; ++i) {
    token_index.set(i, static_cast<int32_t>(i));
    expert_id.set(i, expert);
    weight.set(i, 1.f);
  }
  return encode_frame(message);
}

}  // namespace moe::integration
