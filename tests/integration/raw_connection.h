// A blocking TCP client for hostile-input tests: writes arbitrary bytes (valid frames, garbage, half
// frames) to a daemon and reads back whatever comes: one frame, or the connection closing. No part of
// the project's transport is used on the sending side, so nothing is validated before it leaves.
// Every read is bounded by a timeout.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <capnp/message.h>

#include "runtime/wire/framing.h"

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

}  // namespace moe::integration
