// Frames written from the message's own segments (encode_segmented_frame): the table followed by the
// segments is byte for byte what encode_frame flattens, for one segment and for several (even and odd
// counts: the table's padding word), and the limits are checked before the message is kept.
#include <gtest/gtest.h>

#include <capnp/message.h>

#include <memory>
#include <vector>

#include "runtime/wire/blob_message.h"
#include "runtime/wire/framing.h"

namespace moe {
namespace {

// A heartbeat of `loads` entries, built in segments of `first_words` words growing by fixed size.
std::unique_ptr<capnp::MallocMessageBuilder> heartbeat(unsigned first_words, uint32_t loads) {
  auto message = std::make_unique<capnp::MallocMessageBuilder>(first_words, capnp::AllocationStrategy::FIXED_SIZE);
  auto envelope = message->initRoot<wire::Envelope>();
  envelope.setRequestId(9);
  auto hb = envelope.initHeartbeat();
  hb.setWorkerId(2);
  auto load = hb.initLoad(loads);
  for (uint32_t i = 0; i < loads; ++i) load[i].setTokens(i * 7 + 1);
  return message;
}

// The bytes a gathered write of `frame` puts on the wire.
std::vector<std::byte> gathered(const SegmentedFrame& frame) {
  std::vector<std::byte> out;
  auto append = [&](const capnp::word* p, size_t words) {
    auto* b = reinterpret_cast<const std::byte*>(p);
    out.insert(out.end(), b, b + words * sizeof(capnp::word));
  };
  append(frame.table.begin(), frame.table.size());
  for (auto segment : frame.message->getSegmentsForOutput()) append(segment.begin(), segment.size());
  return out;
}

TEST(SegmentedFrame, SameBytesAsTheFlatFrameForAnySegmentCount) {
  // 1 segment; then small fixed-size segments: several, both parities of the count.
  for (auto [first_words, loads] : {std::pair{1024u, 40u}, {8u, 40u}, {8u, 41u}, {16u, 3u}, {8u, 200u}}) {
    auto message = heartbeat(first_words, loads);
    const size_t segments = message->getSegmentsForOutput().size();
    auto flat = encode_frame(*message);
    auto expected = frame_bytes(flat);
    SegmentedFrame frame = encode_segmented_frame(std::move(message), FrameLimits{});
    std::vector<std::byte> got = gathered(frame);
    ASSERT_EQ(frame.bytes, got.size()) << segments << " segments";
    ASSERT_EQ(got.size(), expected.size()) << segments << " segments";
    EXPECT_TRUE(std::equal(got.begin(), got.end(), expected.begin())) << segments << " segments";
    Frame decoded = decode_frame(got);
    auto load = decoded.envelope().getHeartbeat().getLoad();
    ASSERT_EQ(load.size(), loads);
    EXPECT_EQ(load[loads - 1].getTokens(), (loads - 1) * 7 + 1);
  }
}

TEST(SegmentedFrame, LimitsAreCheckedBeforeKeepingTheMessage) {
  FrameLimits few_segments;
  few_segments.max_segments = 2;
  auto many = heartbeat(8, 200);
  ASSERT_GT(many->getSegmentsForOutput().size(), 2u);
  try {
    encode_segmented_frame(std::move(many), few_segments);
    FAIL() << "expected TooManySegments";
  } catch (const FrameError& e) {
    EXPECT_EQ(e.kind(), FrameError::Kind::TooManySegments) << e.what();
  }
  FrameLimits small;
  small.max_message_bytes = 256;
  try {
    encode_segmented_frame(heartbeat(1024, 100), small);
    FAIL() << "expected TooLarge";
  } catch (const FrameError& e) {
    EXPECT_EQ(e.kind(), FrameError::Kind::TooLarge) << e.what();
    EXPECT_NE(std::string(e.what()).find("256"), std::string::npos) << e.what();
  }
}

// A blob in the builder's own storage (BlobMessageBuilder) travels as its own segment: odd sizes are
// padded with zeros, the decoded blob has the bytes written, and the frame is the same flat or gathered.
TEST(SegmentedFrame, ExternalBlobsTravelAsTheirOwnSegment) {
  for (size_t bytes : {size_t{0}, size_t{1}, size_t{13}, size_t{64}, size_t{4099}}) {
    auto message = std::make_unique<BlobMessageBuilder>(64u);
    auto reply = message->initRoot<wire::Envelope>().initForwardReply();
    reply.setNumTokens(1);
    auto [orphan, data] = message->external_data(bytes);
    ASSERT_EQ(data.size(), bytes);
    ASSERT_EQ(reinterpret_cast<uintptr_t>(data.begin()) % sizeof(capnp::word), 0u);
    for (size_t i = 0; i < bytes; ++i) data[i] = static_cast<kj::byte>(i * 7 + 3);
    reply.adoptOutput(kj::mv(orphan));
    auto flat = encode_frame(*message);
    auto expected = frame_bytes(flat);
    SegmentedFrame frame = encode_segmented_frame(std::move(message), FrameLimits{});
    std::vector<std::byte> got = gathered(frame);
    ASSERT_EQ(got.size(), expected.size()) << bytes << " bytes";
    EXPECT_TRUE(std::equal(got.begin(), got.end(), expected.begin())) << bytes << " bytes";
    Frame decoded = decode_frame(got);
    auto output = decoded.envelope().getForwardReply().getOutput();
    ASSERT_EQ(output.size(), bytes);
    for (size_t i = 0; i < bytes; ++i) ASSERT_EQ(output[i], static_cast<kj::byte>(i * 7 + 3)) << "byte " << i;
    // The padding after an odd-sized blob is zero on the wire.
    const size_t padded = (bytes + 7) / 8 * 8;
    const auto* end = reinterpret_cast<const kj::byte*>(output.begin());
    for (size_t i = bytes; i < padded; ++i) EXPECT_EQ(end[i], 0) << "padding byte " << i;
  }
}

}  // namespace
}  // namespace moe
