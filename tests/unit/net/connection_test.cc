// Connection and Server on 127.0.0.1: request/reply, many requests in flight from many threads with
// replies out of order, deadlines, failing fast when the server goes away, handler failures, big frames.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <random>
#include <thread>

#include "runtime/net/io_pool.h"
#include "runtime/net/net_error.h"
#include "runtime/net/server.h"
#include "runtime/wire/tensor_pack.h"
#include "tests/unit/net/net_test_util.h"

namespace moe {
namespace {

using namespace std::chrono_literals;
using test::HeldRequests;

NetError::Kind net_error_kind(std::future<Frame>& future) {
  try {
    future.get();
  } catch (const NetError& e) {
    return e.kind();
  }
  ADD_FAILURE() << "the request did not fail with a NetError";
  return NetError::Kind::BadAddress;
}

TEST(Connection, RequestGetsItsReply) {
  IoPool pool(2);
  Server server(pool.context(), "127.0.0.1", 0, test::echo_handler());
  ASSERT_NE(server.port(), 0);
  auto connection = Connection::connect(pool.context(), server.address(), 2000ms);
  capnp::MallocMessageBuilder message;
  test::make_request(message, 20);
  auto reply = connection->request(message, 2000ms).get();
  EXPECT_EQ(test::reply_value(reply), 41u);
  EXPECT_EQ(connection->pending_requests(), 0u);
  connection->close();
  server.stop();
}

TEST(Connection, ManyConcurrentRequestsWithRepliesOutOfOrder) {
  IoPool pool(2);
  HeldRequests held;
  Server server(pool.context(), "127.0.0.1", 0, held.handler());
  auto connection = Connection::connect(pool.context(), "127.0.0.1", server.port(), 2000ms);

  constexpr int kThreads = 4, kPerThread = 32, kTotal = kThreads * kPerThread;
  std::vector<std::vector<std::pair<uint32_t, std::future<Frame>>>> futures(kThreads);
  std::vector<std::thread> senders;
  for (int t = 0; t < kThreads; ++t) {
    senders.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        uint32_t value = static_cast<uint32_t>(t * 1000 + i);
        capnp::MallocMessageBuilder message;
        test::make_request(message, value);
        futures[t].emplace_back(value, connection->request(message, 10s));
      }
    });
  }
  for (auto& s : senders) s.join();

  // The server replies only once all are in, shuffled, from two threads other than the io threads.
  auto requests = held.take(kTotal);
  ASSERT_EQ(requests.size(), size_t{kTotal});
  std::shuffle(requests.begin(), requests.end(), std::mt19937(11));
  std::thread a([&] { for (int i = 0; i < kTotal; i += 2) test::reply_to(requests[i].responder, requests[i].value); });
  std::thread b([&] { for (int i = 1; i < kTotal; i += 2) test::reply_to(requests[i].responder, requests[i].value); });
  a.join();
  b.join();

  for (auto& per_thread : futures) {
    for (auto& [value, future] : per_thread) {
      ASSERT_EQ(future.wait_for(5s), std::future_status::ready) << "request " << value;
      EXPECT_EQ(test::reply_value(future.get()), value * 2 + 1) << "request " << value;
    }
  }
  EXPECT_EQ(connection->pending_requests(), 0u);
  connection->close();
}

TEST(Connection, DeadlineExceededThenTheConnectionKeepsWorking) {
  IoPool pool(2);
  HeldRequests held;
  Server server(pool.context(), "127.0.0.1", 0, held.handler());
  auto connection = Connection::connect(pool.context(), server.address(), 2000ms);

  capnp::MallocMessageBuilder message;
  test::make_request(message, 1);
  auto started = std::chrono::steady_clock::now();
  auto future = connection->request(message, 100ms);
  try {
    future.get();
    FAIL() << "no deadline error";
  } catch (const NetError& e) {
    EXPECT_EQ(e.kind(), NetError::Kind::DeadlineExceeded);
    EXPECT_NE(std::string(e.what()).find("(heartbeat)"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("no reply within 100 ms"), std::string::npos) << e.what();
  }
  auto waited = std::chrono::steady_clock::now() - started;
  EXPECT_GE(waited, 100ms);
  EXPECT_LT(waited, 2s);

  // A late reply to the expired request is dropped; the next request still gets its own reply.
  auto late = held.take(1);
  test::reply_to(late[0].responder, late[0].value);
  capnp::MallocMessageBuilder next;
  test::make_request(next, 2);
  auto next_future = connection->request(next, 5s);
  auto second = held.take(1);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].value, 2u);
  test::reply_to(second[0].responder, second[0].value);
  EXPECT_EQ(test::reply_value(next_future.get()), 5u);
  connection->close();
}

TEST(Connection, ServerStopFailsPendingRequestsFast) {
  IoPool pool(2);
  HeldRequests held;
  auto server = std::make_unique<Server>(pool.context(), "127.0.0.1", 0, held.handler());
  auto connection = Connection::connect(pool.context(), server->address(), 2000ms);
  std::vector<std::future<Frame>> futures;
  for (uint32_t i = 0; i < 5; ++i) {
    capnp::MallocMessageBuilder message;
    test::make_request(message, i);
    futures.push_back(connection->request(message, 30s));
  }
  auto requests = held.take(5);  // all arrived, none answered

  auto started = std::chrono::steady_clock::now();
  server.reset();  // stop: closes the server side of the connection
  for (auto& f : futures) {
    ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
    EXPECT_EQ(net_error_kind(f), NetError::Kind::ConnectionClosed);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2s);
  EXPECT_TRUE(test::eventually([&] { return !connection->is_open(); }));

  // Replies after the stop go nowhere; new requests fail at once.
  EXPECT_FALSE(test::reply_to(requests[0].responder, requests[0].value));
  capnp::MallocMessageBuilder message;
  test::make_request(message, 9);
  auto after = connection->request(message, 30s);
  ASSERT_EQ(after.wait_for(0s), std::future_status::ready);
  EXPECT_EQ(net_error_kind(after), NetError::Kind::ConnectionClosed);
}

TEST(Connection, LocalCloseFailsPendingRequests) {
  IoPool pool(1);
  HeldRequests held;
  Server server(pool.context(), "127.0.0.1", 0, held.handler());
  auto connection = Connection::connect(pool.context(), server.address(), 2000ms);
  std::atomic<int> failed{0};
  for (uint32_t i = 0; i < 3; ++i) {
    capnp::MallocMessageBuilder message;
    test::make_request(message, i);
    connection->request_async(message, 30s, [&](std::exception_ptr error, Frame reply) {
      EXPECT_TRUE(error);
      EXPECT_TRUE(reply.empty());
      ++failed;
    });
  }
  held.take(3);
  connection->close();
  EXPECT_EQ(failed.load(), 3);  // close() fails them before it returns
  EXPECT_TRUE(test::eventually([&] { return server.connection_count() == 0; }));
}

TEST(Connection, HandlerExceptionBecomesInternalErrorReply) {
  IoPool pool(1);
  Server server(pool.context(), "127.0.0.1", 0, [](Frame request, Responder) {
    throw std::runtime_error("expert 7 of layer 2 is not loaded (value " + std::to_string(test::request_value(request)) + ")");
  });
  auto connection = Connection::connect(pool.context(), server.address(), 2000ms);
  capnp::MallocMessageBuilder message;
  test::make_request(message, 3);
  auto reply = connection->request(message, 2s).get();
  try {
    throw_if_error(reply.envelope());
    FAIL() << "no error reply";
  } catch (const RemoteError& e) {
    EXPECT_EQ(e.code(), wire::ErrorCode::INTERNAL);
    EXPECT_NE(e.remote_message().find("expert 7 of layer 2 is not loaded (value 3)"), std::string::npos);
  }
  connection->close();
}

TEST(Connection, BigTensorTravelsIntact) {
  IoPool pool(2);
  // Replies with the request's tokens converted to bf16.
  Server server(pool.context(), "127.0.0.1", 0, [](Frame request, Responder responder) {
    auto forward = request.envelope().getForwardRequest();
    size_t n = size_t{forward.getNumTokens()} * forward.getHidden();
    auto values = unpack_tensor(forward.getTokens(), forward.getDtype(), n, "tokens");
    capnp::MallocMessageBuilder message;
    auto reply = message.initRoot<wire::Envelope>().initForwardReply();
    reply.setNumTokens(forward.getNumTokens());
    reply.setHidden(forward.getHidden());
    reply.setDtype(wire::DType::BF16);
    pack_tensor(values, wire::DType::BF16, reply.initOutput(packed_tensor_bytes(wire::DType::BF16, n)));
    responder.reply(message);
  });
  auto connection = Connection::connect(pool.context(), server.address(), 2000ms);
  const uint32_t tokens = 512, hidden = 4096;  // 8 MiB of f32
  std::vector<float> values(size_t{tokens} * hidden);
  for (size_t i = 0; i < values.size(); ++i) values[i] = float(int(i % 251) - 125);  // integers below 256: exact in bf16
  capnp::MallocMessageBuilder message;
  auto request = message.initRoot<wire::Envelope>().initForwardRequest();
  request.setNumTokens(tokens);
  request.setHidden(hidden);
  request.setDtype(wire::DType::F32);
  pack_tensor(values, wire::DType::F32, request.initTokens(values.size() * 4));
  auto frame = connection->request(message, 10s).get();
  auto reply = frame.envelope().getForwardReply();
  ASSERT_EQ(reply.getOutput().size(), values.size() * 2);
  EXPECT_EQ(unpack_tensor(reply.getOutput(), reply.getDtype(), values.size(), "output"), values);
  connection->close();
}

// The gathered path: requests and replies handed over as messages of several segments are written from
// their segments (no flat copy), several in flight at once, and arrive intact; over the limit still
// throws locally.
TEST(Connection, OwnedMultiSegmentMessagesTravelIntact) {
  IoPool pool(2);
  // Replies with the request's tokens, bf16, in a message of small fixed-size segments.
  Server server(pool.context(), "127.0.0.1", 0, [](Frame request, Responder responder) {
    auto forward = request.envelope().getForwardRequest();
    size_t n = size_t{forward.getNumTokens()} * forward.getHidden();
    auto values = unpack_tensor(forward.getTokens(), forward.getDtype(), n, "tokens");
    auto message = std::make_unique<capnp::MallocMessageBuilder>(16, capnp::AllocationStrategy::FIXED_SIZE);
    auto reply = message->initRoot<wire::Envelope>().initForwardReply();
    reply.setNumTokens(forward.getNumTokens());
    reply.setHidden(forward.getHidden());
    reply.setDtype(wire::DType::BF16);
    pack_tensor(values, wire::DType::BF16, reply.initOutput(packed_tensor_bytes(wire::DType::BF16, n)));
    if (message->getSegmentsForOutput().size() < 2) throw std::logic_error("expected a reply of several segments");
    responder.reply(std::move(message));
  });
  auto connection = Connection::connect(pool.context(), server.address(), 2000ms);
  constexpr int kRequests = 6;
  std::vector<std::vector<float>> sent(kRequests);
  std::vector<std::future<Frame>> replies;
  for (int r = 0; r < kRequests; ++r) {
    const uint32_t tokens = 64 + 32 * r, hidden = 1024;  // 256 KiB .. 736 KiB of f32: direct reads too
    sent[r].resize(size_t{tokens} * hidden);
    for (size_t i = 0; i < sent[r].size(); ++i) sent[r][i] = float(int((i + r) % 251) - 125);  // exact in bf16
    auto message = std::make_unique<capnp::MallocMessageBuilder>(8, capnp::AllocationStrategy::FIXED_SIZE);
    auto request = message->initRoot<wire::Envelope>().initForwardRequest();
    request.setNumTokens(tokens);
    request.setHidden(hidden);
    request.setDtype(wire::DType::F32);
    auto index = request.initTokenIndex(3);  // a list in its own segment before the blob
    index.set(2, r);
    pack_tensor(sent[r], wire::DType::F32, request.initTokens(sent[r].size() * 4));
    ASSERT_GE(message->getSegmentsForOutput().size(), 3u);
    auto promise = std::make_shared<std::promise<Frame>>();
    replies.push_back(promise->get_future());
    connection->request_async(std::move(message), 10s, [promise](std::exception_ptr error, Frame reply) {
      if (error) promise->set_exception(error); else promise->set_value(std::move(reply));
    });
  }
  for (int r = 0; r < kRequests; ++r) {
    ASSERT_EQ(replies[r].wait_for(10s), std::future_status::ready) << "request " << r;
    Frame frame = replies[r].get();
    ASSERT_EQ(frame.envelope().which(), wire::Envelope::FORWARD_REPLY) << "request " << r;
    auto reply = frame.envelope().getForwardReply();
    EXPECT_EQ(unpack_tensor(reply.getOutput(), reply.getDtype(), sent[r].size(), "output"), sent[r]) << "request " << r;
  }
  FrameLimits limits;
  limits.max_message_bytes = 4096;
  auto small = Connection::connect(pool.context(), server.address(), 2000ms, limits);
  auto big = std::make_unique<capnp::MallocMessageBuilder>();
  big->initRoot<wire::Envelope>().initForwardRequest().initTokens(10000);
  EXPECT_THROW(small->request_async(std::move(big), 1s, [](std::exception_ptr, Frame) {}), FrameError);
  EXPECT_EQ(small->pending_requests(), 0u);
  small->close();
  connection->close();
  server.stop();
}

TEST(Connection, OutgoingMessageOverTheLimitThrowsLocally) {
  IoPool pool(1);
  Server server(pool.context(), "127.0.0.1", 0, test::echo_handler());
  FrameLimits limits;
  limits.max_message_bytes = 4096;
  auto connection = Connection::connect(pool.context(), server.address(), 2000ms, limits);
  capnp::MallocMessageBuilder message;
  message.initRoot<wire::Envelope>().initForwardRequest().initTokens(10000);
  EXPECT_THROW(connection->request(message, 1s), FrameError);
  EXPECT_EQ(connection->pending_requests(), 0u);
  EXPECT_TRUE(connection->is_open());
  connection->close();
}

TEST(Connection, ConnectRefusedFailsFast) {
  IoPool pool(1);
  uint16_t port;
  {
    Server probe(pool.context(), "127.0.0.1", 0, test::echo_handler());
    port = probe.port();
  }  // nothing listens there any more
  auto started = std::chrono::steady_clock::now();
  try {
    Connection::connect(pool.context(), "127.0.0.1", port, 2000ms);
    FAIL() << "connected to a closed port";
  } catch (const NetError& e) {
    EXPECT_EQ(e.kind(), NetError::Kind::ConnectFailed);
    EXPECT_NE(std::string(e.what()).find("connect to 127.0.0.1:" + std::to_string(port) + " failed"), std::string::npos)
        << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, 1s);
}

TEST(Server, ListenOnABusyPortFails) {
  IoPool pool(1);
  Server first(pool.context(), "127.0.0.1", 0, test::echo_handler());
  try {
    Server second(pool.context(), "127.0.0.1", first.port(), test::echo_handler());
    FAIL() << "two servers on one port";
  } catch (const NetError& e) {
    EXPECT_EQ(e.kind(), NetError::Kind::ListenFailed);
    EXPECT_NE(std::string(e.what()).find("cannot listen on " + first.address()), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace moe
