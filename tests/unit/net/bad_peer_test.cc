// Bad peers: garbage, malformed frames, oversized and truncated frames get a typed badRequest reply
// (when one can be sent) and, when the stream cannot go on, a closed connection; meanwhile another
// client on the same server is served as if nothing happened.
#include <gtest/gtest.h>

#include <array>
#include <future>

#include "runtime/net/io_pool.h"
#include "runtime/net/net_error.h"
#include "runtime/net/server.h"
#include "tests/unit/net/net_test_util.h"
#include "tests/unit/wire/raw_frames.h"

namespace moe {
namespace {

using namespace std::chrono_literals;

class BadPeer : public ::testing::Test {
 protected:
  BadPeer() : pool_(2), server_(pool_.context(), "127.0.0.1", 0, held_.handler(), limits()) {
    good_ = Connection::connect(pool_.context(), server_.address(), 2000ms);
  }
  ~BadPeer() override {
    good_->close();
    server_.stop();
  }
  static FrameLimits limits() {
    FrameLimits limits;
    limits.max_message_bytes = 1 << 20;
    return limits;
  }

  // The good client has a request waiting while the bad peer misbehaves, and a new one afterwards:
  // both are answered.
  std::future<Frame> start_good_request(uint32_t value) {
    capnp::MallocMessageBuilder message;
    test::make_request(message, value);
    return good_->request(message, 5s);
  }
  void finish_good_requests(std::future<Frame>& first, uint32_t value) {
    auto held = held_.take(1);
    ASSERT_EQ(held.size(), 1u);
    test::reply_to(held[0].responder, held[0].value);
    EXPECT_EQ(test::reply_value(first.get()), value * 2 + 1);
    auto second = start_good_request(value + 1);
    auto held_second = held_.take(1);
    ASSERT_EQ(held_second.size(), 1u);
    test::reply_to(held_second[0].responder, held_second[0].value);
    EXPECT_EQ(test::reply_value(second.get()), (value + 1) * 2 + 1);
    EXPECT_TRUE(good_->is_open());
  }

  IoPool pool_;
  test::HeldRequests held_;
  Server server_;
  std::shared_ptr<Connection> good_;
};

void expect_bad_request(const Frame& reply, uint64_t request_id, const std::string& text) {
  auto envelope = reply.envelope();
  EXPECT_EQ(envelope.getRequestId(), request_id);
  ASSERT_EQ(envelope.which(), wire::Envelope::ERROR);
  EXPECT_EQ(envelope.getError().getCode(), wire::ErrorCode::BAD_REQUEST);
  EXPECT_NE(std::string(envelope.getError().getMessage().cStr()).find(text), std::string::npos)
      << envelope.getError().getMessage().cStr();
}

TEST_F(BadPeer, GarbageGetsBadRequestAndIsClosedWhileOthersAreServed) {
  auto pending = start_good_request(10);
  test::RawSocket raw(server_.port());
  raw.write(std::string("GET /metrics HTTP/1.1\r\nHost: worker\r\n\r\n"));
  expect_bad_request(raw.read_frame(), 0, "segment count 542393672 exceeds 512");
  EXPECT_TRUE(raw.closed_by_peer());
  finish_good_requests(pending, 10);
}

TEST_F(BadPeer, MalformedFrameIsAnsweredAndTheStreamGoesOn) {
  auto pending = start_good_request(20);
  test::RawSocket raw(server_.port());
  // requestId 77, then a pointer far outside the segment.
  raw.write(test::single_segment_frame({test::struct_pointer(0, 2, 1), 77, 0, test::struct_pointer(1000, 1, 0)}));
  expect_bad_request(raw.read_frame(), 77, "malformed frame");
  // The same raw connection is still served.
  capnp::MallocMessageBuilder message;
  test::make_request(message, 5);
  message.getRoot<wire::Envelope>().setRequestId(78);
  raw.write(frame_bytes(encode_frame(message)));
  auto held = held_.take(2);  // the good client's request and the raw one, in either order
  ASSERT_EQ(held.size(), 2u);
  for (auto& h : held) {
    if (h.responder.request_id() == 78) test::reply_to(h.responder, h.value);
  }
  auto reply = raw.read_frame();
  EXPECT_EQ(reply.envelope().getRequestId(), 78u);
  EXPECT_EQ(test::reply_value(reply), 11u);
  for (auto& h : held) {
    if (h.responder.request_id() != 78) test::reply_to(h.responder, h.value);
  }
  EXPECT_EQ(test::reply_value(pending.get()), 41u);
  EXPECT_TRUE(good_->is_open());
}

TEST_F(BadPeer, OversizedFrameIsRefusedFromItsHeader) {
  auto pending = start_good_request(30);
  test::RawSocket raw(server_.port());
  raw.write(test::segment_table(1, 1 << 20));  // announces 8 MiB + 8 bytes; the server allows 1 MiB
  expect_bad_request(raw.read_frame(), 0, "frame of 8388616 bytes exceeds the limit of 1048576 bytes");
  EXPECT_TRUE(raw.closed_by_peer());
  finish_good_requests(pending, 30);
}

TEST_F(BadPeer, TooManySegmentsIsRefused) {
  auto pending = start_good_request(40);
  test::RawSocket raw(server_.port());
  raw.write(test::segment_table(600, 1));
  expect_bad_request(raw.read_frame(), 0, "segment count 600 exceeds 512");
  EXPECT_TRUE(raw.closed_by_peer());
  finish_good_requests(pending, 40);
}

TEST_F(BadPeer, TruncatedFrameThenHangUpClosesOnlyThatConnection) {
  auto pending = start_good_request(50);
  {
    test::RawSocket raw(server_.port());
    capnp::MallocMessageBuilder message;
    test::make_request(message, 1);
    auto frame = encode_frame(message);
    auto bytes = frame_bytes(frame);
    raw.write(bytes.first(bytes.size() - 5));
    EXPECT_TRUE(test::eventually([&] { return server_.connection_count() == 2; }));
    raw.shutdown_send();
    EXPECT_TRUE(raw.closed_by_peer());
  }
  EXPECT_TRUE(test::eventually([&] { return server_.connection_count() == 1; }));
  finish_good_requests(pending, 50);
}

TEST_F(BadPeer, ClientFailsPendingRequestsOnAGarbageReply) {
  // A "server" that answers any bytes with garbage: the client must fail its request, not hang.
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor acceptor(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  std::thread fake([&] {
    boost::asio::ip::tcp::socket socket(io);
    acceptor.accept(socket);
    std::array<char, 64> buffer;
    socket.read_some(boost::asio::buffer(buffer));
    boost::asio::write(socket, boost::asio::buffer(std::string("HTTP/1.1 400 Bad Request\r\n\r\n")));
    boost::system::error_code ignored;
    socket.read_some(boost::asio::buffer(buffer), ignored);  // until the client hangs up
  });
  auto client = Connection::connect(pool_.context(), "127.0.0.1", acceptor.local_endpoint().port(), 2000ms);
  capnp::MallocMessageBuilder message;
  test::make_request(message, 1);
  auto future = client->request(message, 10s);
  ASSERT_EQ(future.wait_for(5s), std::future_status::ready);
  try {
    future.get();
    FAIL() << "garbage accepted as a reply";
  } catch (const NetError& e) {
    EXPECT_EQ(e.kind(), NetError::Kind::ConnectionClosed);
    EXPECT_NE(std::string(e.what()).find("exceeds 512"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(client->is_open());
  fake.join();
}

}  // namespace
}  // namespace moe
