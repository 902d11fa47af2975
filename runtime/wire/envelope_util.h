// Small helpers around the Envelope: names of message kinds and error codes for logs, filling an
// `error` reply, and turning a received `error` reply into a RemoteError.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/wire/moe.capnp.h"
#include "runtime/wire/wire_error.h"

namespace moe {

// The schema name of the envelope's union member ("forwardRequest"), or "unknown(N)" for a kind this
// build does not know (a newer peer).
std::string message_kind_name(wire::Envelope::Which which);
std::string message_kind_name(wire::Envelope::Reader envelope);

// "staleEpoch", ... or "unknown(N)".
std::string error_code_name(wire::ErrorCode code);

// Makes `envelope` an error reply (keeps its requestId).
void set_error(wire::Envelope::Builder envelope, wire::ErrorCode code, const std::string& message,
               uint64_t current_epoch = 0);

// Throws RemoteError when `envelope` is an error reply; does nothing otherwise.
void throw_if_error(wire::Envelope::Reader envelope);

// Throws WireError("expected a forwardReply, got placement (request 7)") unless the envelope holds
// `expected`; an error reply is thrown as RemoteError first.
void expect_kind(wire::Envelope::Reader envelope, wire::Envelope::Which expected);

}  // namespace moe
