// The exception a worker request handler throws to answer with a typed `error` reply: the wire error
// code, a one-line message, and the epoch the worker serves (so a client can refresh its placement).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "runtime/wire/moe.capnp.h"

namespace moe {

class RequestError : public std::runtime_error {
 public:
  RequestError(wire::ErrorCode code, const std::string& message, uint64_t current_epoch = 0)
      : std::runtime_error(message), code_(code), current_epoch_(current_epoch) {}
  wire::ErrorCode code() const { return code_; }
  uint64_t current_epoch() const { return current_epoch_; }

 private:
  wire::ErrorCode code_;
  uint64_t current_epoch_;
};

}  // namespace moe
