// Framing round trips: encode -> decode keeps every field; the incremental decoder reassembles frames
// from any chunking, through both the copying and the zero-copy (body window) paths.
#include <gtest/gtest.h>

#include <capnp/message.h>

#include <cstring>
#include <numeric>
#include <random>

#include "runtime/wire/framing.h"
#include "runtime/wire/tensor_pack.h"

namespace moe {
namespace {

std::vector<std::byte> to_vector(const kj::Array<capnp::word>& frame) {
  auto bytes = frame_bytes(frame);
  return {bytes.begin(), bytes.end()};
}

// A forward request of `tokens` x `hidden` with a recognisable pattern.
kj::Array<capnp::word> forward_request_frame(uint64_t request_id, uint32_t tokens, uint32_t hidden) {
  capnp::MallocMessageBuilder message;
  auto envelope = message.initRoot<wire::Envelope>();
  envelope.setRequestId(request_id);
  auto request = envelope.initForwardRequest();
  request.setEpoch(7);
  request.setLayer(3);
  request.setDtype(wire::DType::F32);
  request.setNumTokens(tokens);
  request.setHidden(hidden);
  std::vector<float> values(size_t{tokens} * hidden);
  std::iota(values.begin(), values.end(), float(request_id));
  pack_tensor(values, wire::DType::F32, request.initTokens(values.size() * 4));
  auto index = request.initTokenIndex(tokens);
  auto expert = request.initExpertId(tokens);
  auto weight = request.initWeight(tokens);
  for (uint32_t t = 0; t < tokens; ++t) {
    index.set(t, static_cast<int32_t>(t));
    expert.set(t, static_cast<int32_t>(t % 5));
    weight.set(t, 0.25f * float(t));
  }
  return encode_frame(message);
}

void expect_forward_request(const Frame& frame, uint64_t request_id, uint32_t tokens, uint32_t hidden) {
  auto envelope = frame.envelope();
  ASSERT_EQ(envelope.which(), wire::Envelope::FORWARD_REQUEST);
  EXPECT_EQ(envelope.getRequestId(), request_id);
  auto request = envelope.getForwardRequest();
  EXPECT_EQ(request.getEpoch(), 7u);
  EXPECT_EQ(request.getLayer(), 3);
  ASSERT_EQ(request.getNumTokens(), tokens);
  ASSERT_EQ(request.getHidden(), hidden);
  auto values = unpack_tensor(request.getTokens(), request.getDtype(), size_t{tokens} * hidden, "tokens");
  for (size_t i = 0; i < values.size(); ++i) ASSERT_EQ(values[i], float(request_id) + float(i)) << "element " << i;
  ASSERT_EQ(request.getWeight().size(), tokens);
  for (uint32_t t = 0; t < tokens; ++t) {
    EXPECT_EQ(request.getTokenIndex()[t], static_cast<int32_t>(t));
    EXPECT_EQ(request.getExpertId()[t], static_cast<int32_t>(t % 5));
    EXPECT_EQ(request.getWeight()[t], 0.25f * float(t));
  }
}

TEST(Framing, RoundTripKeepsEveryField) {
  auto frame = forward_request_frame(42, 6, 8);
  Frame decoded = decode_frame(frame_bytes(frame));
  EXPECT_EQ(decoded.size_bytes(), frame.size() * sizeof(capnp::word));
  expect_forward_request(decoded, 42, 6, 8);
}

TEST(Framing, RoundTripOfPlacementWithNestedLists) {
  capnp::MallocMessageBuilder message;
  auto envelope = message.initRoot<wire::Envelope>();
  envelope.setRequestId(9);
  auto placement = envelope.initCommit().initPlacement();
  placement.setEpoch(12);
  auto workers = placement.initWorkers(2);
  workers[0].setId(1);
  workers[0].setAddress("10.0.0.1:7000");
  workers[1].setId(2);
  workers[1].setAddress("10.0.0.2:7000");
  workers[1].setState(wire::WorkerState::DRAINING);
  auto assignments = placement.initAssignments(1);
  assignments[0].setLayer(1);
  assignments[0].setExpert(4);
  auto replicas = assignments[0].initReplicas(2);
  replicas[0].setWorkerId(1);
  replicas[0].setShare(0.75f);
  replicas[1].setWorkerId(2);
  replicas[1].setShare(0.25f);

  auto frame = encode_frame(message);
  Frame decoded = decode_frame(frame_bytes(frame));
  auto got = decoded.envelope().getCommit().getPlacement();
  EXPECT_EQ(got.getEpoch(), 12u);
  ASSERT_EQ(got.getWorkers().size(), 2u);
  EXPECT_EQ(std::string(got.getWorkers()[1].getAddress().cStr()), "10.0.0.2:7000");
  EXPECT_EQ(got.getWorkers()[1].getState(), wire::WorkerState::DRAINING);
  ASSERT_EQ(got.getAssignments()[0].getReplicas().size(), 2u);
  EXPECT_EQ(got.getAssignments()[0].getReplicas()[0].getShare(), 0.75f);
  EXPECT_EQ(got.getAssignments()[0].getReplicas()[1].getWorkerId(), 2u);
}

TEST(Framing, DecoderReassemblesFramesFromAnyChunking) {
  std::vector<std::byte> stream;
  for (uint64_t id = 1; id <= 3; ++id) {
    auto bytes = to_vector(forward_request_frame(id, 4 * uint32_t(id), 16));
    stream.insert(stream.end(), bytes.begin(), bytes.end());
  }
  std::mt19937 rng(5);
  for (int trial = 0; trial < 20; ++trial) {
    FrameDecoder decoder;
    std::vector<Frame> frames;
    size_t at = 0;
    while (at < stream.size()) {
      size_t chunk = std::min<size_t>(stream.size() - at, 1 + rng() % (trial < 2 ? 1 : 97));
      decoder.feed(std::span(stream).subspan(at, chunk));
      at += chunk;
      while (decoder.has_output()) frames.push_back(decoder.pop());
    }
    EXPECT_FALSE(decoder.mid_frame());
    EXPECT_NO_THROW(decoder.finish());
    ASSERT_EQ(frames.size(), 3u) << "trial " << trial;
    for (uint64_t id = 1; id <= 3; ++id) expect_forward_request(frames[id - 1], id, 4 * uint32_t(id), 16);
  }
}

TEST(Framing, BodyWindowReadsBigBodiesWithoutCopy) {
  auto bytes = to_vector(forward_request_frame(5, 64, 256));  // ~64 KiB body
  FrameDecoder decoder;
  uint32_t segments_minus_one;
  std::memcpy(&segments_minus_one, bytes.data(), 4);
  const size_t table_bytes = (4 * (2 + size_t{segments_minus_one}) + 7) / 8 * 8;
  decoder.feed(std::span(bytes).first(table_bytes));  // the segment table alone
  size_t at = table_bytes;
  while (at < bytes.size()) {
    auto window = decoder.body_window();
    ASSERT_FALSE(window.empty()) << "at byte " << at;
    ASSERT_EQ(window.size(), bytes.size() - at);
    size_t n = std::min<size_t>(window.size(), 10000);
    std::memcpy(window.data(), bytes.data() + at, n);
    decoder.commit_body(n);
    at += n;
  }
  EXPECT_TRUE(decoder.body_window().empty());
  ASSERT_TRUE(decoder.has_output());
  expect_forward_request(decoder.pop(), 5, 64, 256);
  EXPECT_THROW(decoder.commit_body(1), std::logic_error);
}

TEST(Framing, MultiSegmentMessagesRoundTrip) {
  // A tiny first segment and fixed-size growth force several segments.
  capnp::MallocMessageBuilder message(8, capnp::AllocationStrategy::FIXED_SIZE);
  auto envelope = message.initRoot<wire::Envelope>();
  envelope.setRequestId(3);
  auto heartbeat = envelope.initHeartbeat();
  heartbeat.setWorkerId(4);
  auto load = heartbeat.initLoad(40);
  for (uint32_t i = 0; i < 40; ++i) load[i].setTokens(i * 11);
  ASSERT_GT(message.getSegmentsForOutput().size(), 1u);
  auto frame = encode_frame(message);
  Frame decoded = decode_frame(frame_bytes(frame));
  auto got = decoded.envelope().getHeartbeat().getLoad();
  ASSERT_EQ(got.size(), 40u);
  EXPECT_EQ(got[39].getTokens(), 39u * 11);
}

TEST(Framing, NestingWithinTheLimitDecodes) {
  FrameLimits limits;
  limits.nesting_limit = 16;
  // Placement inside Commit inside Envelope is the deepest real message: well within 16.
  capnp::MallocMessageBuilder message;
  auto replicas = message.initRoot<wire::Envelope>().initCommit().initPlacement().initAssignments(1)[0].initReplicas(1);
  replicas[0].setWorkerId(8);
  Frame decoded = decode_frame(frame_bytes(encode_frame(message)), limits);
  EXPECT_EQ(decoded.envelope().getCommit().getPlacement().getAssignments()[0].getReplicas()[0].getWorkerId(), 8u);
}

TEST(Framing, EmptyFrameRefusesEnvelope) {
  Frame empty;
  EXPECT_TRUE(empty.empty());
  EXPECT_THROW(empty.envelope(), WireError);
}

}  // namespace
}  // namespace moe
