// Helpers around the Envelope (see envelope_util.h). Names come from the compiled-in schema, so they
// always match moe.capnp.
#include "runtime/wire/envelope_util.h"

#include <algorithm>

#include "runtime/wire/text_limits.h"

#include <capnp/schema.h>

namespace moe {

std::string message_kind_name(wire::Envelope::Which which) {
  auto fields = capnp::Schema::from<wire::Envelope>().getUnionFields();
  auto index = static_cast<unsigned>(which);
  if (index >= fields.size()) return "unknown(" + std::to_string(index) + ")";
  return fields[index].getProto().getName().cStr();
}

std::string message_kind_name(wire::Envelope::Reader envelope) {
  return message_kind_name(envelope.which());
}

std::string error_code_name(wire::ErrorCode code) {
  auto enumerants = capnp::Schema::from<wire::ErrorCode>().getEnumerants();
  auto index = static_cast<unsigned>(code);
  if (index >= enumerants.size()) return "unknown(" + std::to_string(index) + ")";
  return enumerants[index].getProto().getName().cStr();
}

void set_error(wire::Envelope::Builder envelope, wire::ErrorCode code, const std::string& message,
               uint64_t current_epoch) {
  auto error = envelope.initError();
  error.setCode(code);
  error.setMessage(message);
  error.setCurrentEpoch(current_epoch);
}

void throw_if_error(wire::Envelope::Reader envelope) {
  if (envelope.which() != wire::Envelope::ERROR) return;
  auto error = envelope.getError();
  // A peer's message is cut at kMaxErrorMessageBytes (ours never exceed it): it goes into exceptions and logs.
  std::string message(error.getMessage().cStr(), std::min<size_t>(error.getMessage().size(), kMaxErrorMessageBytes));
  if (error.getMessage().size() > kMaxErrorMessageBytes)
    message += " [cut: " + std::to_string(error.getMessage().size()) + " bytes]";
  throw RemoteError(error.getCode(), message, error.getCurrentEpoch());
}

void expect_kind(wire::Envelope::Reader envelope, wire::Envelope::Which expected) {
  throw_if_error(envelope);
  if (envelope.which() != expected) {
    throw WireError("expected a " + message_kind_name(expected) + ", got " + message_kind_name(envelope) +
                    " (request " + std::to_string(envelope.getRequestId()) + ")");
  }
}

}  // namespace moe
