// Hostile input over raw TCP to a real moe-worker and moe-coordinator: malformed, truncated, oversized
// frames and frames announcing too many segments; forward requests with a wrong hidden size, unknown or
// unhosted experts, an unknown layer, inconsistent lists. Each must get a typed error reply or a closed
// connection, and the daemon must keep serving: a ClusterClient forward right after gives the right
// output, and a daemon's memory does not grow to what a frame header announced.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <functional>

#include "runtime/client/cluster_client.h"
#include "runtime/wire/envelope_util.h"
#include "tests/integration/integration_util.h"
#include "tests/integration/raw_connection.h"

namespace moe::integration {
namespace {

constexpr double kTolerance = 1e-4;

using Reply = RawConnection::Reply;


std::string describe(const Reply& reply) {
  if (reply.kind == Reply::Kind::Frame) {
    auto e = reply.frame.envelope();
    if (e.which() == wire::Envelope::ERROR)
      return "error reply " + error_code_name(e.getError().getCode()) + ": " + e.getError().getMessage().cStr();
    return "a " + message_kind_name(e) + " reply";
  }
  return reply.detail;
}

// An `error` reply with `code`; "" when it is one.
std::string expect_error(const Reply& reply, wire::ErrorCode code) {
  if (reply.kind == Reply::Kind::Frame && reply.frame.envelope().which() == wire::Envelope::ERROR &&
      reply.frame.envelope().getError().getCode() == code)
    return "";
  return "expected an error reply " + error_code_name(code) + ", got " + describe(reply);
}

// Bad bytes: a badRequest error reply or the connection closed; never silence, never another reply.
std::string expect_bad_request_or_close(const Reply& reply) {
  if (reply.kind == Reply::Kind::Closed) return "";
  return expect_error(reply, wire::ErrorCode::BAD_REQUEST);
}

// Frame headers: word 0 = segment count - 1, then one word per segment size (in 8-byte words).
// A complete 2-word frame whose root pointer points 1000 words past the end of its segment.
const std::vector<uint32_t> kMalformedFrame{0, 2, (1000u << 2), 1u, 0, 0};
// A header announcing 16 words, followed by only 3 of them.
const std::vector<uint32_t> kTruncatedFrame{0, 16, 0, 0, 0, 0, 0, 0};
// One segment of 2^28 words (2 GiB), far over the 64 MiB frame limit.
const std::vector<uint32_t> kOversizedHeader{0, 1u << 28};
// 1000 segments (over the 512 limit), sizes 1.
std::vector<uint32_t> too_many_segments_header() {
  std::vector<uint32_t> words{999};
  for (int i = 0; i < 1000; ++i) words.push_back(1);
  words.push_back(0);  // padding to a whole word
  return words;
}

enum class Target { Worker, Coordinator };
void PrintTo(Target target, std::ostream* out) { *out << (target == Target::Worker ? "worker" : "coordinator"); }

class HostileInput : public ClusterTest, public ::testing::WithParamInterface<Target> {
 protected:
  void SetUp() override {
    ClusterTest::SetUp();
    TestClusterOptions o;
    o.model_flags = tiny_model_flags();
    o.workers = 2;
    TestCluster& cluster = start_cluster(o);
    placement_ = cluster.wait_ready();
    ClusterClientOptions co;
    co.wire_dtype = wire::DType::F32;
    co.deadline = 5s;
    client_ = std::make_unique<ClusterClient>(cluster.coordinator_address(), co);
    reference_ = tiny_reference();
    x_ = random_input(9, client_->spec().hidden_size, 5);
  }

  Target target() const { return GetParam(); }
  std::string target_address() {
    return target() == Target::Worker ? cluster_->worker_address(0) : cluster_->coordinator_address();
  }
  DaemonProcess& target_process() { return target() == Target::Worker ? cluster_->worker(0) : cluster_->coordinator(); }

  // The daemon still serves: it is alive, the existing client's forwards are right on both layers, and a
  // new client (getModel + getPlacement on the coordinator) works too.
  void expect_still_serving(const std::string& after) {
    ASSERT_TRUE(target_process().running()) << "the daemon died after " << after << " (" << target_process().exit_status()
                                            << ")";
    for (int32_t layer : client_->spec().moe_layers) {
      Matrix got = client_->forward(layer, x_);
      EXPECT_LT(relative_error(got, reference_->forward(layer, x_)), kTolerance) << "layer " << layer << " after " << after;
    }
    ClusterClientOptions co;
    co.wire_dtype = wire::DType::F32;
    co.deadline = 5s;
    ClusterClient fresh(cluster_->coordinator_address(), co);
    EXPECT_LT(relative_error(fresh.forward(0, x_), reference_->forward(0, x_)), kTolerance) << "new client after " << after;
  }

  // A valid request on `connection` gets its proper reply (the stream survived the bad frame).
  void expect_valid_request_answered(RawConnection& connection, const std::string& after) {
    capnp::MallocMessageBuilder message;
    auto envelope = message.initRoot<wire::Envelope>();
    envelope.setRequestId(4242);
    envelope.setGetPlacement();
    wire::Envelope::Which expected = wire::Envelope::PLACEMENT;
    if (target() == Target::Worker) {
      // A forward of one token to an expert the worker hosts.
      const uint32_t id = TestCluster::worker_id(placement_, cluster_->worker_address(0));
      int32_t hosted = -1;
      for (int32_t e = 0; e < client_->spec().experts_per_layer() && hosted < 0; ++e)
        for (const auto& r : placement_.replicas(0, e))
          if (r.worker_id == id) hosted = e;
      ASSERT_GE(hosted, 0) << "worker 0 hosts no expert of layer 0";
      const auto hidden = static_cast<uint32_t>(client_->spec().hidden_size);
      fill_forward(envelope, placement_.epoch(), 0, hidden, size_t{hidden} * 4, {0}, {hosted}, {1.f});
      expected = wire::Envelope::FORWARD_REPLY;
    }
    ASSERT_TRUE(connection.write_message(message)) << "the daemon closed the connection after " << after;
    Reply reply = connection.read_reply(3s);
    ASSERT_EQ(reply.kind, Reply::Kind::Frame) << "no reply to a valid request after " << after << ": " << reply.detail;
    EXPECT_EQ(reply.frame.envelope().getRequestId(), 4242u);
    EXPECT_EQ(reply.frame.envelope().which(), expected) << "after " << after << ": " << describe(reply);
  }

 public:
  // Fills a forwardRequest: `tokens_bytes` of tokens (a small repeating pattern), the given lists.
  static void fill_forward(wire::Envelope::Builder envelope, uint64_t epoch, int32_t layer, uint32_t hidden,
                           size_t tokens_bytes, std::vector<int32_t> token_index, std::vector<int32_t> expert_id,
                           std::vector<float> weight, uint32_t num_tokens = 1) {
    auto request = envelope.initForwardRequest();
    request.setEpoch(epoch);
    request.setLayer(layer);
    request.setDtype(wire::DType::F32);
    request.setNumTokens(num_tokens);
    request.setHidden(hidden);
    auto tokens = request.initTokens(static_cast<unsigned>(tokens_bytes));
    std::vector<float> values(tokens_bytes / 4);
    for (size_t i = 0; i < values.size(); ++i) values[i] = 0.01f * static_cast<float>(i % 17) - 0.08f;
    std::memcpy(tokens.begin(), values.data(), values.size() * 4);
    auto ti = request.initTokenIndex(static_cast<unsigned>(token_index.size()));
    for (unsigned i = 0; i < token_index.size(); ++i) ti.set(i, token_index[i]);
    auto ei = request.initExpertId(static_cast<unsigned>(expert_id.size()));
    for (unsigned i = 0; i < expert_id.size(); ++i) ei.set(i, expert_id[i]);
    auto wi = request.initWeight(static_cast<unsigned>(weight.size()));
    for (unsigned i = 0; i < weight.size(); ++i) wi.set(i, weight[i]);
    request.setDeadlineMs(2000);
  }

 protected:
  ClientPlacement placement_;
  std::unique_ptr<ClusterClient> client_;
  std::unique_ptr<LocalEngine> reference_;
  Matrix x_;
};

TEST_P(HostileInput, MalformedFrameGetsBadRequestOrClose) {
  RawConnection connection(target_address());
  ASSERT_TRUE(connection.write_words(kMalformedFrame));
  Reply reply = connection.read_reply(3s);
  EXPECT_EQ(expect_bad_request_or_close(reply), "") << "malformed frame";
  // A complete malformed frame leaves the stream in step: when the connection stays open, it still works.
  if (reply.kind == Reply::Kind::Frame) expect_valid_request_answered(connection, "a malformed frame");
  expect_still_serving("a malformed frame");
}

TEST_P(HostileInput, TruncatedFrameThenEndOfStreamIsDropped) {
  RawConnection connection(target_address());
  ASSERT_TRUE(connection.write_words(kTruncatedFrame));
  connection.shutdown_write();
  Reply reply = connection.read_reply(3s);
  EXPECT_NE(reply.kind, Reply::Kind::Timeout) << "the daemon neither replied nor closed after a truncated frame + EOF";
  if (reply.kind == Reply::Kind::Frame) {
    EXPECT_EQ(expect_error(reply, wire::ErrorCode::BAD_REQUEST), "");
    EXPECT_TRUE(connection.wait_closed(3s)) << "the connection should close after the stream ended mid-frame";
  }
  expect_still_serving("a truncated frame");
}

TEST_P(HostileInput, HalfAFrameHeldOpenDoesNotBlockOthers) {
  RawConnection stalled(target_address());
  ASSERT_TRUE(stalled.write_words(kTruncatedFrame));
  // The stalled sender keeps its connection open while everyone else is served.
  expect_still_serving("half a frame held open");
  const Reply reply = stalled.read_reply(200ms);
  EXPECT_NE(reply.kind, Reply::Kind::Frame) << "a reply to half a frame: " << describe(reply);
}

TEST_P(HostileInput, OversizedFrameIsRefusedWithoutAllocatingIt) {
  const uint64_t memory_before = resident_bytes(target_process().pid());
  RawConnection connection(target_address());
  ASSERT_TRUE(connection.write_words(kOversizedHeader));
  std::vector<std::byte> body(1 << 20, std::byte{0});
  for (int i = 0; i < 8; ++i)
    if (!connection.write(body)) break;  // the daemon may close while we still write
  Reply reply = connection.read_reply(3s);
  EXPECT_EQ(expect_bad_request_or_close(reply), "") << "oversized frame";
  if (reply.kind == Reply::Kind::Frame)
    EXPECT_TRUE(connection.wait_closed(3s)) << "a stream with an oversized frame cannot go on and should be closed";
  const uint64_t memory_after = resident_bytes(target_process().pid());
  EXPECT_LT(memory_after, memory_before + (256u << 20))
      << "resident memory went from " << memory_before << " to " << memory_after << " bytes";
  expect_still_serving("an oversized frame");
}

TEST_P(HostileInput, TooManySegmentsIsRefused) {
  RawConnection connection(target_address());
  const auto header = too_many_segments_header();
  connection.write_words(header);  // the daemon may close before it has read everything
  Reply reply = connection.read_reply(3s);
  EXPECT_EQ(expect_bad_request_or_close(reply), "") << "1000 segments";
  if (reply.kind == Reply::Kind::Frame)
    EXPECT_TRUE(connection.wait_closed(3s)) << "a stream with too many segments cannot go on and should be closed";
  expect_still_serving("a frame of 1000 segments");
}

TEST_P(HostileInput, FrameOfGarbageGetsBadRequestOrClose) {
  // A well-formed header (one segment of 511 words) followed by 4 KiB of garbage as the message.
  RawConnection connection(target_address());
  std::vector<uint32_t> frame{0, 511};
  for (uint32_t i = 0; i < 511 * 2; ++i) frame.push_back(i * 2654435761u + 12345u);
  ASSERT_TRUE(connection.write_words(frame));
  Reply reply = connection.read_reply(3s);
  EXPECT_EQ(expect_bad_request_or_close(reply), "") << "a frame of garbage";
  if (reply.kind == Reply::Kind::Frame) expect_valid_request_answered(connection, "a frame of garbage");
  expect_still_serving("a frame of garbage");
}

INSTANTIATE_TEST_SUITE_P(Daemons, HostileInput, ::testing::Values(Target::Worker, Target::Coordinator),
                         [](const auto& info) { return info.param == Target::Worker ? "Worker" : "Coordinator"; });

// Well-formed forward requests with wrong contents, sent straight to a worker (and one to the
// coordinator, which does not serve forwards), each on one connection that must stay usable.
class BadForwardRequest : public HostileInput {};

TEST_P(BadForwardRequest, GetsTypedErrorsAndTheWorkerKeepsServing) {
  const uint64_t epoch = placement_.epoch();
  const uint32_t hidden = static_cast<uint32_t>(client_->spec().hidden_size);
  const uint32_t me = TestCluster::worker_id(placement_, cluster_->worker_address(0));
  const uint32_t other = TestCluster::worker_id(placement_, cluster_->worker_address(1));
  int32_t hosted = -1, not_hosted = -1;
  for (int32_t e = 0; e < client_->spec().experts_per_layer(); ++e) {
    const auto& replicas = placement_.replicas(0, e);
    bool here = false;
    for (const auto& r : replicas) here |= r.worker_id == me;
    if (here && hosted < 0) hosted = e;
    if (!here && not_hosted < 0 && !replicas.empty() && replicas[0].worker_id == other) not_hosted = e;
  }
  ASSERT_GE(hosted, 0);
  ASSERT_GE(not_hosted, 0) << "worker 1 should host an expert of layer 0 that worker 0 does not";

  struct Case {
    std::string name;
    std::function<void(wire::Envelope::Builder)> fill;
    wire::ErrorCode code;
  };
  const size_t row = size_t{hidden} * 4;
  const std::vector<Case> cases{
      {"hidden 32 instead of the model's",
       [&](auto e) { fill_forward(e, epoch, 0, hidden / 2, row / 2, {0}, {hosted}, {1.f}); }, wire::ErrorCode::BAD_REQUEST},
      {"tokens blob shorter than numTokens x hidden",
       [&](auto e) { fill_forward(e, epoch, 0, hidden, row - 4, {0}, {hosted}, {1.f}); }, wire::ErrorCode::BAD_REQUEST},
      {"expert id 99 (the model has 8)",
       [&](auto e) { fill_forward(e, epoch, 0, hidden, row, {0}, {99}, {1.f}); }, wire::ErrorCode::BAD_REQUEST},
      {"negative expert id", [&](auto e) { fill_forward(e, epoch, 0, hidden, row, {0}, {-1}, {1.f}); },
       wire::ErrorCode::BAD_REQUEST},
      {"token index outside numTokens",
       [&](auto e) { fill_forward(e, epoch, 0, hidden, row, {3}, {hosted}, {1.f}); }, wire::ErrorCode::BAD_REQUEST},
      {"lists of different lengths",
       [&](auto e) { fill_forward(e, epoch, 0, hidden, row, {0, 0}, {hosted}, {1.f}); }, wire::ErrorCode::BAD_REQUEST},
      {"layer 7 (the model has 2)", [&](auto e) { fill_forward(e, epoch, 7, hidden, row, {0}, {hosted}, {1.f}); },
       wire::ErrorCode::UNKNOWN_LAYER},
      {"an expert hosted by the other worker",
       [&](auto e) { fill_forward(e, epoch, 0, hidden, row, {0}, {not_hosted}, {1.f}); },
       wire::ErrorCode::EXPERT_NOT_HOSTED},
  };
  RawConnection connection(cluster_->worker_address(0));
  uint64_t request_id = 100;
  for (const Case& c : cases) {
    capnp::MallocMessageBuilder message;
    auto envelope = message.initRoot<wire::Envelope>();
    envelope.setRequestId(++request_id);
    c.fill(envelope);
    ASSERT_TRUE(connection.write_message(message)) << c.name << ": the worker closed the connection";
    Reply reply = connection.read_reply(3s);
    EXPECT_EQ(expect_error(reply, c.code), "") << c.name;
    if (reply.kind == Reply::Kind::Frame) {
      EXPECT_EQ(reply.frame.envelope().getRequestId(), request_id) << c.name;
      if (reply.frame.envelope().which() == wire::Envelope::ERROR)
        EXPECT_GT(reply.frame.envelope().getError().getMessage().size(), 0u) << c.name << ": the error should say why";
    }
    if (reply.kind != Reply::Kind::Frame) break;
  }
  expect_valid_request_answered(connection, "bad forward requests");
  expect_still_serving("bad forward requests");

  // The coordinator answers a forward request with a typed error and keeps serving.
  RawConnection to_coordinator(cluster_->coordinator_address());
  capnp::MallocMessageBuilder message;
  auto envelope = message.initRoot<wire::Envelope>();
  envelope.setRequestId(7);
  fill_forward(envelope, epoch, 0, hidden, row, {0}, {hosted}, {1.f});
  ASSERT_TRUE(to_coordinator.write_message(message));
  Reply reply = to_coordinator.read_reply(3s);
  EXPECT_EQ(expect_error(reply, wire::ErrorCode::BAD_REQUEST), "") << "forwardRequest to the coordinator";
  expect_still_serving("a forward request to the coordinator");
}

INSTANTIATE_TEST_SUITE_P(ToWorker, BadForwardRequest, ::testing::Values(Target::Worker),
                         [](const auto&) { return std::string("Worker"); });

}  // namespace
}  // namespace moe::integration
