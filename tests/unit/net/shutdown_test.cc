// Shutdown: stopping the server waits for running handlers and starts no new ones, and still writes the
// replies already queued; stopping from inside a handler does not deadlock; stopping the pool with
// requests in flight neither hangs nor crashes.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <future>

#include "runtime/net/io_pool.h"
#include "runtime/net/net_error.h"
#include "runtime/net/server.h"
#include "tests/unit/net/net_test_util.h"

namespace moe {
namespace {

using namespace std::chrono_literals;

TEST(Shutdown, ServerStopWaitsForRunningHandlers) {
  IoPool pool(2);
  std::atomic<bool> handler_started{false}, handler_finished{false};
  std::atomic<int> calls{0};
  Server server(pool.context(), "127.0.0.1", 0, [&](Frame, Responder) {
    ++calls;
    handler_started = true;
    std::this_thread::sleep_for(200ms);
    handler_finished = true;
  });
  auto connection = Connection::connect(pool.context(), server.address(), 2000ms);
  capnp::MallocMessageBuilder message;
  test::make_request(message, 1);
  auto future = connection->request(message, 30s);
  ASSERT_TRUE(test::eventually([&] { return handler_started.load(); }));
  server.stop();
  EXPECT_TRUE(handler_finished.load());  // stop() returned only after the handler did
  ASSERT_EQ(future.wait_for(5s), std::future_status::ready);
  EXPECT_THROW(future.get(), NetError);
  EXPECT_EQ(calls.load(), 1);
  connection->close();
}

// A reply of `bytes` bytes whose numTokens carries `value` (big enough to be on the wire for a while).
bool reply_big(const Responder& responder, uint32_t value, size_t bytes) {
  capnp::MallocMessageBuilder message;
  auto reply = message.initRoot<wire::Envelope>().initForwardReply();
  reply.setNumTokens(value);
  auto output = reply.initOutput(static_cast<unsigned>(bytes));
  std::memset(output.begin(), static_cast<int>(value & 0xff), bytes);
  return responder.reply(message);
}

// A worker's SIGTERM: its batcher has computed and queued the replies, then the server stops. The
// replies must still reach the client (before the fix, stop() cut the writes off mid-frame).
TEST(Shutdown, ServerStopWritesRepliesAlreadyQueued) {
  IoPool pool(2);
  test::HeldRequests held;
  Server server(pool.context(), "127.0.0.1", 0, held.handler());
  auto connection = Connection::connect(pool.context(), server.address(), 2000ms);
  constexpr uint32_t kRequests = 4;
  constexpr size_t kReplyBytes = 16u << 20;
  std::vector<std::future<Frame>> futures;
  for (uint32_t i = 0; i < kRequests; ++i) {
    capnp::MallocMessageBuilder message;
    test::make_request(message, i);
    futures.push_back(connection->request(message, 30s));
  }
  for (const auto& r : held.take(kRequests)) ASSERT_TRUE(reply_big(r.responder, r.value, kReplyBytes));
  server.stop();  // at once: the 64 MiB of replies are still queued or on their way
  for (uint32_t i = 0; i < kRequests; ++i) {
    ASSERT_EQ(futures[i].wait_for(10s), std::future_status::ready);
    Frame frame = futures[i].get();  // throws NetError if the reply was dropped
    expect_kind(frame.envelope(), wire::Envelope::FORWARD_REPLY);
    EXPECT_EQ(frame.envelope().getForwardReply().getNumTokens(), i);
    EXPECT_EQ(frame.envelope().getForwardReply().getOutput().size(), kReplyBytes);
  }
  // Once the replies are written the server closes the connection: the client learns of it.
  EXPECT_TRUE(test::eventually([&] { return !connection->is_open(); }));
  EXPECT_EQ(server.connection_count(), 0u);
}

TEST(Shutdown, StopFromInsideAHandlerDoesNotDeadlock) {
  IoPool pool(2);
  std::promise<void> stopped;
  std::unique_ptr<Server> server;
  server = std::make_unique<Server>(pool.context(), "127.0.0.1", 0, [&](Frame, Responder) {
    server->stop();
    stopped.set_value();
  });
  auto connection = Connection::connect(pool.context(), server->address(), 2000ms);
  capnp::MallocMessageBuilder message;
  test::make_request(message, 1);
  auto future = connection->request(message, 30s);
  ASSERT_EQ(stopped.get_future().wait_for(5s), std::future_status::ready);
  ASSERT_EQ(future.wait_for(5s), std::future_status::ready);
  EXPECT_THROW(future.get(), NetError);
  connection->close();
  server.reset();
}

TEST(Shutdown, PoolStopWithRequestsInFlight) {
  auto pool = std::make_unique<IoPool>(2);
  test::HeldRequests held;
  auto server = std::make_unique<Server>(pool->context(), "127.0.0.1", 0, held.handler());
  auto connection = Connection::connect(pool->context(), server->address(), 2000ms);
  std::vector<std::future<Frame>> futures;
  for (uint32_t i = 0; i < 8; ++i) {
    capnp::MallocMessageBuilder message;
    test::make_request(message, i);
    futures.push_back(connection->request(message, 30s));
  }
  auto requests = held.take(8);
  // Replies race with the stop: each either arrives or is dropped.
  std::thread replier([&] {
    for (auto& r : requests) test::reply_to(r.responder, r.value);
  });
  pool->stop();
  replier.join();
  connection->close();  // fails what is still pending, with no io thread running
  for (auto& f : futures) {
    ASSERT_EQ(f.wait_for(1s), std::future_status::ready);
    try {
      EXPECT_EQ(test::reply_value(f.get()) % 2, 1u);
    } catch (const NetError& e) {
      EXPECT_EQ(e.kind(), NetError::Kind::ConnectionClosed);
    }
  }
  server.reset();
  connection.reset();
  pool.reset();
}

TEST(Shutdown, DroppingEverythingWithoutClosing) {
  // No close(), no stop(): destruction order pool-last must still not hang or crash, and pending
  // requests must be failed when their connection goes away with the pool.
  std::future<Frame> orphan;
  {
    IoPool pool(2);
    test::HeldRequests held;
    Server server(pool.context(), "127.0.0.1", 0, held.handler());
    auto connection = Connection::connect(pool.context(), server.address(), 2000ms);
    capnp::MallocMessageBuilder message;
    test::make_request(message, 1);
    orphan = connection->request(message, 30s);
    held.take(1);
    pool.stop();
  }
  ASSERT_EQ(orphan.wait_for(1s), std::future_status::ready);
  EXPECT_THROW(orphan.get(), NetError);
}

}  // namespace
}  // namespace moe
