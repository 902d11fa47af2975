// Envelope helpers: names straight from the schema, error replies and their RemoteError.
#include <gtest/gtest.h>

#include <capnp/message.h>

#include "runtime/wire/envelope_util.h"

namespace moe {
namespace {

TEST(EnvelopeUtil, KindAndCodeNamesComeFromTheSchema) {
  EXPECT_EQ(message_kind_name(wire::Envelope::FORWARD_REQUEST), "forwardRequest");
  EXPECT_EQ(message_kind_name(wire::Envelope::STATUS_REPLY), "statusReply");
  EXPECT_EQ(message_kind_name(static_cast<wire::Envelope::Which>(999)), "unknown(999)");
  EXPECT_EQ(error_code_name(wire::ErrorCode::STALE_EPOCH), "staleEpoch");
  EXPECT_EQ(error_code_name(wire::ErrorCode::NOT_READY), "notReady");
}

TEST(EnvelopeUtil, ErrorReplyBecomesRemoteError) {
  capnp::MallocMessageBuilder message;
  auto envelope = message.initRoot<wire::Envelope>();
  envelope.setRequestId(4);
  set_error(envelope, wire::ErrorCode::STALE_EPOCH, "planned on epoch 3", 5);
  auto reader = envelope.asReader();
  try {
    throw_if_error(reader);
    FAIL() << "no RemoteError";
  } catch (const RemoteError& e) {
    EXPECT_EQ(e.code(), wire::ErrorCode::STALE_EPOCH);
    EXPECT_EQ(e.current_epoch(), 5u);
    EXPECT_EQ(e.remote_message(), "planned on epoch 3");
    EXPECT_STREQ(e.what(), "peer replied staleEpoch: planned on epoch 3 (peer epoch 5)");
  }
  EXPECT_THROW(expect_kind(reader, wire::Envelope::FORWARD_REPLY), RemoteError);
}

TEST(EnvelopeUtil, ExpectKindNamesBothKinds) {
  capnp::MallocMessageBuilder message;
  auto envelope = message.initRoot<wire::Envelope>();
  envelope.setRequestId(7);
  envelope.initPlacement().setEpoch(1);
  EXPECT_NO_THROW(throw_if_error(envelope.asReader()));
  EXPECT_NO_THROW(expect_kind(envelope.asReader(), wire::Envelope::PLACEMENT));
  try {
    expect_kind(envelope.asReader(), wire::Envelope::FORWARD_REPLY);
    FAIL() << "no WireError";
  } catch (const WireError& e) {
    EXPECT_STREQ(e.what(), "expected a forwardReply, got placement (request 7)");
  }
}

}  // namespace
}  // namespace moe
