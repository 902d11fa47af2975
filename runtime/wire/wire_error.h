// Exceptions of the wire layer: WireError for wrong contents (sizes, dtypes), FrameError for a byte
// stream that is not a valid frame, and RemoteError for an `error` reply a peer sent back.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

#include "runtime/wire/moe.capnp.h"

namespace moe {

class WireError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class FrameError : public WireError {
 public:
  enum class Kind {
    TooManySegments,  // segment table announces more segments than allowed
    TooLarge,         // frame size over the configured maximum message size
    Truncated,        // the stream ended inside a frame
    Malformed,        // a complete frame whose contents are not a valid message
  };

  FrameError(Kind kind, const std::string& message, std::optional<uint64_t> request_id = std::nullopt)
      : WireError(message), kind_(kind), request_id_(request_id) {}

  Kind kind() const { return kind_; }
  // True when the whole frame was consumed, so the stream can go on with the next frame.
  bool stream_usable() const { return kind_ == Kind::Malformed; }
  // The request id of a malformed frame, when its root could still be read.
  std::optional<uint64_t> request_id() const { return request_id_; }

 private:
  Kind kind_;
  std::optional<uint64_t> request_id_;
};

const char* frame_error_kind_name(FrameError::Kind kind);  // "too many segments", ...

// A typed `error` reply from a peer.
class RemoteError : public std::runtime_error {
 public:
  RemoteError(wire::ErrorCode code, const std::string& message, uint64_t current_epoch);
  wire::ErrorCode code() const { return code_; }
  const std::string& remote_message() const { return remote_message_; }
  uint64_t current_epoch() const { return current_epoch_; }

 private:
  wire::ErrorCode code_;
  std::string remote_message_;
  uint64_t current_epoch_;
};

}  // namespace moe
