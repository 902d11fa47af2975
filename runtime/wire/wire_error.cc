// Exceptions of the wire layer (see wire_error.h).
#include "runtime/wire/wire_error.h"

#include "runtime/wire/envelope_util.h"

namespace moe {

const char* frame_error_kind_name(FrameError::Kind kind) {
  switch (kind) {
    case FrameError::Kind::TooManySegments: return "too many segments";
    case FrameError::Kind::TooLarge: return "too large";
    case FrameError::Kind::Truncated: return "truncated";
    case FrameError::Kind::Malformed: return "malformed";
  }
  return "?";
}

RemoteError::RemoteError(wire::ErrorCode code, const std::string& message, uint64_t current_epoch)
    : std::runtime_error("peer replied " + error_code_name(code) + ": " + message +
                         (current_epoch ? " (peer epoch " + std::to_string(current_epoch) + ")" : "")),
      code_(code),
      remote_message_(message),
      current_epoch_(current_epoch) {}

}  // namespace moe
