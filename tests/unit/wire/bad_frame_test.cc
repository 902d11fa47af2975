// Every kind of bad frame: garbage, truncation in the segment table and in the body, too many segments,
// over the size limit (caught from the header alone, before any allocation), malformed contents,
// nesting and traversal limits, and outgoing frames over the limit.
#include <gtest/gtest.h>

#include <capnp/any.h>
#include <capnp/dynamic.h>
#include <capnp/message.h>
#include <capnp/schema.h>

#include <cstring>
#include <random>
#include <string>

#include "runtime/wire/framing.h"
#include "runtime/wire/schema_check.h"
#include "tests/unit/wire/raw_frames.h"

namespace moe {
namespace {

std::span<const std::byte> bytes_of(const std::string& text) {
  return std::as_bytes(std::span<const char>(text.data(), text.size()));
}

std::vector<std::byte> valid_frame(uint64_t request_id) {
  capnp::MallocMessageBuilder message;
  auto envelope = message.initRoot<wire::Envelope>();
  envelope.setRequestId(request_id);
  envelope.initError().setMessage("a valid frame");
  auto frame = encode_frame(message);
  auto bytes = frame_bytes(frame);
  return {bytes.begin(), bytes.end()};
}

// Feeds `bytes` and returns the error the decoder reports (fails the test when there is none).
FrameError first_error(FrameDecoder& decoder, std::span<const std::byte> bytes) {
  decoder.feed(bytes);
  if (!decoder.has_output()) {
    ADD_FAILURE() << "no output after " << bytes.size() << " bytes";
    return FrameError(FrameError::Kind::Malformed, "none");
  }
  try {
    decoder.pop();
  } catch (const FrameError& e) {
    return e;
  }
  ADD_FAILURE() << "decoded a frame, expected an error";
  return FrameError(FrameError::Kind::Malformed, "none");
}

TEST(BadFrame, HttpGarbageIsTooManySegments) {
  FrameDecoder decoder;
  // "GET " read as a little-endian u32 is 0x20544547: a segment count of 542393672.
  auto error = first_error(decoder, bytes_of("GET / HTTP/1.1\r\nHost: worker\r\n\r\n"));
  EXPECT_EQ(error.kind(), FrameError::Kind::TooManySegments);
  EXPECT_STREQ(error.what(), "segment count 542393672 exceeds 512");
  EXPECT_FALSE(error.stream_usable());
  EXPECT_TRUE(decoder.failed());
  // A failed decoder ignores whatever follows.
  auto more = valid_frame(1);
  decoder.feed(more);
  EXPECT_FALSE(decoder.has_output());
}

TEST(BadFrame, SegmentCountOverTheLimit) {
  FrameDecoder decoder;
  auto error = first_error(decoder, moe::test::segment_table(600, 1));
  EXPECT_EQ(error.kind(), FrameError::Kind::TooManySegments);
  EXPECT_STREQ(error.what(), "segment count 600 exceeds 512");

  FrameLimits limits;
  limits.max_segments = 4;
  FrameDecoder strict(limits);
  EXPECT_STREQ(first_error(strict, moe::test::segment_table(5, 1)).what(), "segment count 5 exceeds 4");
  FrameDecoder at_limit(limits);
  at_limit.feed(moe::test::segment_table(4, 1));
  EXPECT_FALSE(at_limit.has_output());  // 4 segments are allowed: it waits for their bodies
  EXPECT_TRUE(at_limit.mid_frame());
}

TEST(BadFrame, SizeOverTheLimitIsCaughtFromTheHeaderAlone) {
  FrameDecoder decoder;
  // One segment of 10,000,000 words: the 8-byte header is all the decoder gets.
  auto header = moe::test::segment_table(1, 10'000'000);
  ASSERT_EQ(header.size(), 8u);
  auto error = first_error(decoder, header);
  EXPECT_EQ(error.kind(), FrameError::Kind::TooLarge);
  EXPECT_STREQ(error.what(), "frame of 80000008 bytes exceeds the limit of 67108864 bytes");
  EXPECT_TRUE(decoder.failed());
  EXPECT_TRUE(decoder.body_window().empty());  // nothing was allocated for the body
}

TEST(BadFrame, SizeSummedOverSegmentsIsChecked) {
  FrameLimits limits;
  limits.max_message_bytes = 1024;
  FrameDecoder decoder(limits);
  // 3 segments of 50 words: 16 bytes of table + 1200 bytes of segments.
  auto error = first_error(decoder, moe::test::segment_table(3, 50));
  EXPECT_EQ(error.kind(), FrameError::Kind::TooLarge);
  EXPECT_STREQ(error.what(), "frame of 1216 bytes exceeds the limit of 1024 bytes");
}

TEST(BadFrame, TruncatedInsideTheFirstWord) {
  auto frame = valid_frame(1);
  FrameDecoder decoder;
  decoder.feed(std::span(frame).first(5));
  EXPECT_TRUE(decoder.mid_frame());
  try {
    decoder.finish();
    FAIL() << "finish() accepted a truncated frame";
  } catch (const FrameError& e) {
    EXPECT_EQ(e.kind(), FrameError::Kind::Truncated);
    EXPECT_STREQ(e.what(), "stream ended inside a segment table (5 of at least 8 bytes)");
  }
}

TEST(BadFrame, TruncatedMidSegmentTable) {
  FrameDecoder decoder;
  auto table = moe::test::segment_table(3, 2);  // 16 bytes of table
  decoder.feed(std::span(table).first(12));
  EXPECT_FALSE(decoder.has_output());
  try {
    decoder.finish();
    FAIL() << "finish() accepted a truncated segment table";
  } catch (const FrameError& e) {
    EXPECT_EQ(e.kind(), FrameError::Kind::Truncated);
    EXPECT_STREQ(e.what(), "stream ended inside a segment table (12 of 16 bytes)");
  }
}

TEST(BadFrame, TruncatedBody) {
  auto frame = valid_frame(1);
  FrameDecoder decoder;
  decoder.feed(std::span(frame).first(frame.size() - 3));
  EXPECT_FALSE(decoder.has_output());
  try {
    decoder.finish();
    FAIL() << "finish() accepted a truncated body";
  } catch (const FrameError& e) {
    EXPECT_EQ(e.kind(), FrameError::Kind::Truncated);
    EXPECT_EQ(std::string(e.what()), "stream ended inside a frame body (" + std::to_string(frame.size() - 3) +
                                         " of " + std::to_string(frame.size()) + " bytes)");
  }
  EXPECT_THROW(decode_frame(std::span(frame).first(frame.size() - 3)), FrameError);
}

TEST(BadFrame, TrailingBytesAfterOneFrame) {
  auto frame = valid_frame(1);
  frame.push_back(std::byte{0});
  EXPECT_THROW(decode_frame(frame), FrameError);
}

TEST(BadFrame, OutOfBoundsPointerIsMalformedAndTheStreamGoesOn) {
  // Root struct (2 data words = requestId 99 + union tag, 1 pointer) whose pointer points far past the
  // segment's end.
  auto bad = moe::test::single_segment_frame(
      {moe::test::struct_pointer(0, 2, 1), 99, 0, moe::test::struct_pointer(1000, 1, 0)});
  auto good = valid_frame(100);
  std::vector<std::byte> stream = bad;
  stream.insert(stream.end(), good.begin(), good.end());

  FrameDecoder decoder;
  decoder.feed(stream);
  try {
    decoder.pop();
    FAIL() << "decoded an out-of-bounds pointer";
  } catch (const FrameError& e) {
    EXPECT_EQ(e.kind(), FrameError::Kind::Malformed);
    EXPECT_TRUE(e.stream_usable());
    ASSERT_TRUE(e.request_id().has_value());
    EXPECT_EQ(*e.request_id(), 99u);  // so a server can answer the right request
    EXPECT_NE(std::string(e.what()).find("malformed frame of 40 bytes"), std::string::npos) << e.what();
  }
  ASSERT_TRUE(decoder.has_output());
  EXPECT_EQ(decoder.pop().envelope().getRequestId(), 100u);
}

TEST(BadFrame, EmptySegmentIsMalformed) {
  auto error_frame = moe::test::single_segment_frame({});
  try {
    decode_frame(error_frame);
    FAIL() << "decoded a frame with an empty segment";
  } catch (const FrameError& e) {
    EXPECT_EQ(e.kind(), FrameError::Kind::Malformed);
    EXPECT_FALSE(e.request_id().has_value());
  }
}

TEST(BadFrame, NestingOverTheLimit) {
  FrameLimits limits;
  limits.nesting_limit = 16;
  EXPECT_NO_THROW(decode_frame(moe::test::single_segment_frame(moe::test::nested_struct_words(10)), limits));
  try {
    decode_frame(moe::test::single_segment_frame(moe::test::nested_struct_words(40)), limits);
    FAIL() << "decoded a message nested 40 deep with a nesting limit of 16";
  } catch (const FrameError& e) {
    EXPECT_EQ(e.kind(), FrameError::Kind::Malformed);
    EXPECT_NE(std::string(e.what()).find("nested"), std::string::npos) << e.what();
  }
}

TEST(BadFrame, TraversalLimitStopsAmplification) {
  // 100 pointers to one 300-word blob: 3.2 KB on the wire, 30,000 words to traverse.
  auto frame = moe::test::single_segment_frame(moe::test::amplified_words(100, 300));
  FrameLimits small;
  small.max_message_bytes = 4096;  // validation may traverse 2 * 512 = 1024 words
  ASSERT_LE(frame.size(), small.max_message_bytes);
  try {
    decode_frame(frame, small);
    FAIL() << "decoded an amplified message under a traversal limit of " << small.validation_traversal_limit_words();
  } catch (const FrameError& e) {
    EXPECT_EQ(e.kind(), FrameError::Kind::Malformed);
    EXPECT_NE(std::string(e.what()).find("traversal limit"), std::string::npos) << e.what();
  }
  // The same bytes pass under the default limits (validation traverses up to 16 Mi words): only the limit refused it.
  EXPECT_NO_THROW(decode_frame(frame));
}

// Found by fuzz_envelope: a list of zero-sized structs costs its element count in traversal budget on
// every read, from one word on the wire. Validation used to spend the handlers' budget, so a frame it
// accepted could fail when a handler read it once more. An accepted frame must stay readable in full
// several times over; what is too costly for that is refused at decoding.
TEST(BadFrame, AcceptedFramesStayReadableAfterValidation) {
  FrameLimits limits;
  limits.max_message_bytes = 4096;  // handlers' budget 8192 words, validation's 1024
  int accepted = 0, refused = 0;
  for (uint32_t elements = 100; elements <= 6000; elements += 100) {
    Frame frame;
    try {
      frame = decode_frame(moe::test::single_segment_frame(moe::test::zero_sized_router_list_words(elements)), limits);
    } catch (const FrameError& e) {
      EXPECT_EQ(e.kind(), FrameError::Kind::Malformed);
      EXPECT_NE(std::string(e.what()).find("traversal limit"), std::string::npos) << e.what();
      ++refused;
      continue;
    }
    ++accepted;
    ASSERT_EQ(frame.envelope().which(), wire::Envelope::MODEL_INFO);
    for (int read = 0; read < 4; ++read) {
      try {
        check_against_schema(capnp::toDynamic(frame.envelope()));
        EXPECT_EQ(frame.envelope().getModelInfo().getRouters().size(), elements);
      } catch (const kj::Exception& e) {
        ADD_FAILURE() << "read " << read + 1 << " of an accepted frame with " << elements
                      << " zero-sized routers failed: " << e.getDescription().cStr();
        break;
      }
    }
  }
  EXPECT_GT(accepted, 0);  // small lists are legitimate and decode
  EXPECT_GT(refused, 0);   // big ones are refused at the door
}

TEST(BadFrame, OutgoingFrameOverTheLimitIsRefusedBeforeSending) {
  capnp::MallocMessageBuilder message;
  auto request = message.initRoot<wire::Envelope>().initForwardRequest();
  request.initTokens(4000);
  FrameLimits limits;
  limits.max_message_bytes = 2048;
  try {
    encode_frame(message, limits);
    FAIL() << "encoded a frame over the limit";
  } catch (const FrameError& e) {
    EXPECT_EQ(e.kind(), FrameError::Kind::TooLarge);
    EXPECT_NE(std::string(e.what()).find("outgoing frame of"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("exceeds the limit of 2048 bytes"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(encode_frame(message));
}

// Index of `name`'s pointer in its struct's pointer section.
template <typename T>
uint32_t pointer_slot(const char* name) {
  return capnp::Schema::from<T>().getFieldByName(name).getProto().getSlot().getOffset();
}

TEST(BadFrame, ListOfTheWrongElementTypeIsCaughtAtDecode) {
  // Valid pointers, but `weight` (List(Float32)) holds a list of texts: only the schema knows it is wrong.
  capnp::MallocMessageBuilder message;
  auto envelope = message.initRoot<wire::Envelope>();
  envelope.setRequestId(31);
  capnp::AnyStruct::Builder request(envelope.initForwardRequest());
  request.getPointerSection()[pointer_slot<wire::ForwardRequest>("weight")].initAs<capnp::List<capnp::Text>>(2);
  auto frame = encode_frame(message);
  try {
    decode_frame(frame_bytes(frame));
    FAIL() << "decoded a List(Text) where the schema says List(Float32)";
  } catch (const FrameError& e) {
    EXPECT_EQ(e.kind(), FrameError::Kind::Malformed);
    EXPECT_EQ(e.request_id().value_or(0), 31u);
  }
}

TEST(BadFrame, TextWithoutItsTerminatorIsCaughtAtDecode) {
  capnp::MallocMessageBuilder message;
  auto envelope = message.initRoot<wire::Envelope>();
  capnp::AnyStruct::Builder error(envelope.initError());
  const kj::byte no_nul[3] = {'a', 'b', 'c'};
  error.getPointerSection()[pointer_slot<wire::Error>("message")].setAs<capnp::Data>(kj::arrayPtr(no_nul, 3));
  auto frame = encode_frame(message);
  try {
    decode_frame(frame_bytes(frame));
    FAIL() << "decoded text without a NUL terminator";
  } catch (const FrameError& e) {
    EXPECT_EQ(e.kind(), FrameError::Kind::Malformed);
    EXPECT_NE(std::string(e.what()).find("not NUL-terminated"), std::string::npos) << e.what();
  }
}

TEST(BadFrame, RandomMutationsGiveAFrameOrAFrameErrorNeverACrash) {
  // Mutated copies of a real forward request: every outcome must be a validated frame (whose fields can
  // then be read without exceptions) or a FrameError.
  capnp::MallocMessageBuilder message;
  auto request = message.initRoot<wire::Envelope>().initForwardRequest();
  request.setNumTokens(2);
  request.initTokens(64);
  request.initTokenIndex(4);
  request.initExpertId(4);
  request.initWeight(4);
  auto frame = encode_frame(message);
  auto original = frame_bytes(frame);
  FrameLimits limits;
  limits.max_message_bytes = 1 << 16;
  std::mt19937 rng(1234);
  int frames = 0, errors = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<std::byte> bytes(original.begin(), original.end());
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) bytes[rng() % bytes.size()] = static_cast<std::byte>(rng());
    if (trial % 5 == 0) bytes.resize(rng() % bytes.size());
    FrameDecoder decoder(limits);
    decoder.feed(bytes);
    while (decoder.has_output()) {
      try {
        Frame decoded = decoder.pop();
        ++frames;
        auto envelope = decoded.envelope();
        if (envelope.which() == wire::Envelope::FORWARD_REQUEST) {
          auto got = envelope.getForwardRequest();
          size_t total = got.getTokens().size() + got.getTokenIndex().size() + got.getExpertId().size() +
                         got.getWeight().size();
          EXPECT_LE(total, bytes.size());
        }
      } catch (const FrameError&) {
        ++errors;
      }
    }
  }
  EXPECT_GT(frames, 0);
  EXPECT_GT(errors, 0);
}

TEST(BadFrame, InvalidLimitsAreRejected) {
  FrameLimits limits;
  limits.max_segments = 0;
  EXPECT_THROW(FrameDecoder{limits}, std::invalid_argument);
}

}  // namespace
}  // namespace moe
