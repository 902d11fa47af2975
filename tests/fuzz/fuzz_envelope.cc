// Fuzz target: envelope validation (runtime/wire/framing.* Frame::from_words + schema_check.*). The
// input is one frame. decode_frame either rejects it with a FrameError or accepts it; an accepted frame
// promises that a handler reading any field the schema knows never meets a bad pointer, so every field
// of the active members is then read (recursively, through the dynamic API) and must not throw.
#include <cstddef>
#include <cstdint>
#include <span>

#include <capnp/dynamic.h>
#include <capnp/schema.h>
#include <kj/exception.h>

#include "runtime/wire/envelope_util.h"
#include "runtime/wire/framing.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

void read_value(capnp::DynamicValue::Reader value);

void read_struct(capnp::DynamicStruct::Reader s) {
  for (auto field : s.getSchema().getNonUnionFields()) read_value(s.get(field));
  KJ_IF_MAYBE(active, s.which()) { read_value(s.get(*active)); }
}

void read_value(capnp::DynamicValue::Reader value) {
  switch (value.getType()) {
    case capnp::DynamicValue::STRUCT: read_struct(value.as<capnp::DynamicStruct>()); break;
    case capnp::DynamicValue::LIST:
      for (auto element : value.as<capnp::DynamicList>()) read_value(element);
      break;
    case capnp::DynamicValue::TEXT: (void)value.as<capnp::Text>().size(); break;
    case capnp::DynamicValue::DATA: {
      auto data = value.as<capnp::Data>();
      volatile uint8_t sink = 0;
      for (auto b : data) sink = sink ^ b;
      break;
    }
    default: break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  moe::FrameLimits limits;
  limits.max_message_bytes = 1u << 20;
  limits.max_segments = 64;
  moe::Frame frame;
  try {
    frame = moe::decode_frame(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size), limits);
  } catch (const moe::FrameError&) {
    return 0;  // rejected: fine, as long as nothing crashed on the way
  }
  auto envelope = frame.envelope();
  try {
    (void)moe::message_kind_name(envelope);
    read_struct(capnp::toDynamic(envelope));
  } catch (const kj::Exception& e) {
    FUZZ_CHECK(false, "an accepted frame of %zu bytes failed when read: %s", size, e.getDescription().cStr());
  }
  try {
    moe::throw_if_error(envelope);
  } catch (const moe::RemoteError&) {
  }
  return 0;
}
