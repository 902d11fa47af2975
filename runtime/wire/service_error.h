// ServiceError: the one exception a daemon's request handler throws to answer with a typed `error`
// reply (worker and coordinator alike): the wire error code, a one-line message naming what was wrong
// and with which values, the epoch the replier serves (a client refreshes its placement with it), and
// whether the same request may succeed later or elsewhere (retryable; by default from the code).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "runtime/wire/moe.capnp.h"

namespace moe {

// notReady, overloaded, staleEpoch, expertNotHosted and deadlineExceeded: true; the rest: false.
bool retryable_by_default(wire::ErrorCode code);

class ServiceError : public std::runtime_error {
 public:
  ServiceError(wire::ErrorCode code, const std::string& message, uint64_t current_epoch = 0)
      : ServiceError(code, message, current_epoch, retryable_by_default(code)) {}
  ServiceError(wire::ErrorCode code, const std::string& message, uint64_t current_epoch, bool retryable)
      : std::runtime_error(message), code_(code), current_epoch_(current_epoch), retryable_(retryable) {}
  wire::ErrorCode code() const { return code_; }
  uint64_t current_epoch() const { return current_epoch_; }
  bool retryable() const { return retryable_; }

 private:
  wire::ErrorCode code_;
  uint64_t current_epoch_;
  bool retryable_;
};

// Makes `envelope` the error reply for `error` (keeps its requestId).
void set_service_error(wire::Envelope::Builder envelope, const ServiceError& error);

}  // namespace moe
