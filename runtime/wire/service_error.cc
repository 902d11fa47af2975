// ServiceError's wire form (see service_error.h).
#include "runtime/wire/service_error.h"

namespace moe {

bool retryable_by_default(wire::ErrorCode code) {
  switch (code) {
    case wire::ErrorCode::NOT_READY:
    case wire::ErrorCode::OVERLOADED:
    case wire::ErrorCode::STALE_EPOCH:
    case wire::ErrorCode::EXPERT_NOT_HOSTED:
    case wire::ErrorCode::DEADLINE_EXCEEDED:
      return true;
    default:
      return false;
  }
}

void set_service_error(wire::Envelope::Builder envelope, const ServiceError& error) {
  auto e = envelope.initError();
  e.setCode(error.code());
  e.setMessage(error.what());
  e.setCurrentEpoch(error.current_epoch());
  e.setRetryable(error.retryable());
}

}  // namespace moe
