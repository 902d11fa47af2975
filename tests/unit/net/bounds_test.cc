// Per-connection bounds of Server connections: a peer that never reads its replies stops having its
// requests read once its in-flight bytes pass the budget (and gets every reply once it reads again);
// an idle connection is closed; a request still being handled keeps its connection open; connections
// past max_connections are closed on accept.
#include <gtest/gtest.h>

#include <atomic>

#include "runtime/net/io_pool.h"
#include "runtime/net/net_error.h"
#include "runtime/net/server.h"
#include "tests/unit/net/net_test_util.h"

namespace moe {
namespace {

using namespace std::chrono_literals;
using test::eventually;

constexpr size_t kReplyBytes = 256 * 1024;

// Replies to every request with a forwardReply carrying kReplyBytes of output.
struct BigReplyServer {
  explicit BigReplyServer(ServerOptions options)
      : server(pool.context(), "127.0.0.1", 0,
               [this](Frame, Responder responder) {
                 ++handled;
                 if (auto c = responder.connection().lock()) {
                   std::lock_guard lock(mutex);
                   connection = c;
                 }
                 capnp::MallocMessageBuilder message;
                 auto reply = message.initRoot<wire::Envelope>().initForwardReply();
                 reply.initOutput(kReplyBytes);
                 responder.reply(message);
               },
               options) {}
  std::shared_ptr<Connection> server_side() {
    std::lock_guard lock(mutex);
    return connection.lock();
  }
  IoPool pool{2};
  std::atomic<size_t> handled{0};
  std::mutex mutex;
  std::weak_ptr<Connection> connection;
  Server server;
};

TEST(ConnectionBounds, SlowReaderGetsBackpressureAndAllRepliesOnceItReads) {
  ServerOptions options;
  options.connection.budget_bytes = 4u << 20;
  BigReplyServer s(options);

  // 2,000 requests written without reading a reply (a thread: its writes block once the server stops
  // reading, which is the point).
  constexpr size_t kRequests = 2000;
  capnp::MallocMessageBuilder request;
  test::make_request(request, 1);
  auto frame = encode_frame(request);
  test::RawSocket client(s.server.port());
  std::atomic<size_t> written{0};
  std::string write_error;
  std::thread writer([&] {
    try {
      for (size_t i = 0; i < kRequests; ++i) {
        client.write(frame_bytes(frame));
        ++written;
      }
    } catch (const std::exception& e) {
      write_error = e.what();
    }
  });
  // Joined on every way out (a failed ASSERT included): by then the replies have been read, or the
  // socket is closed, so the writer is not blocked.
  struct Join {
    std::thread& thread;
    test::RawSocket& socket;
    ~Join() {
      socket.close();
      thread.join();
    }
  } join{writer, client};

  // The server stops reading with its in-flight bytes near the budget, not 2,000 x 256 KiB (500 MiB).
  ASSERT_TRUE(eventually([&] {
    auto c = s.server_side();
    return c && c->reading_paused();
  }, 10s)) << "reading never paused; handled " << s.handled << " requests";
  auto c = s.server_side();
  const size_t in_flight = c->in_flight_bytes();
  EXPECT_LE(in_flight, options.connection.budget_bytes + 2 * kReplyBytes);
  EXPECT_LT(s.handled.load(), kRequests);

  // Reading the replies drains the budget: every request gets its reply.
  size_t replies = 0;
  try {
    for (; replies < kRequests; ++replies) {
      Frame reply = client.read_next_frame();
      ASSERT_EQ(reply.envelope().which(), wire::Envelope::FORWARD_REPLY);
    }
  } catch (const std::exception& e) {
    FAIL() << "reading reply " << replies << ": " << e.what();
  }
  EXPECT_EQ(replies, kRequests);
  EXPECT_EQ(s.handled.load(), kRequests);
  EXPECT_EQ(write_error, "");
}

TEST(ConnectionBounds, IdleConnectionIsClosed) {
  IoPool pool(1);
  ServerOptions options;
  options.connection.idle_timeout = 300ms;
  Server server(pool.context(), "127.0.0.1", 0, test::echo_handler(), options);
  auto connection = Connection::connect(pool.context(), server.address(), 2000ms);
  capnp::MallocMessageBuilder request;
  test::make_request(request, 2);
  EXPECT_EQ(test::reply_value(connection->request(request, 2s).get()), 5u);
  EXPECT_TRUE(eventually([&] { return !connection->is_open(); }, 5s)) << "idle connection still open";
  EXPECT_TRUE(eventually([&] { return server.connection_count() == 0; }, 2s));
}

TEST(ConnectionBounds, RequestBeingHandledIsNotIdle) {
  IoPool pool(2);
  test::HeldRequests held;
  ServerOptions options;
  options.connection.idle_timeout = 200ms;
  Server server(pool.context(), "127.0.0.1", 0, held.handler(), options);
  auto connection = Connection::connect(pool.context(), server.address(), 2000ms);
  capnp::MallocMessageBuilder request;
  test::make_request(request, 4);
  auto reply = connection->request(request, 5s);
  auto requests = held.take(1);
  ASSERT_EQ(requests.size(), 1u);
  // Answer after three idle timeouts: the connection must still be there to carry the reply.
  std::this_thread::sleep_for(600ms);
  test::reply_to(requests[0].responder, requests[0].value);
  EXPECT_EQ(test::reply_value(reply.get()), 9u);
}

TEST(ConnectionBounds, ConnectionsPastTheCapAreClosed) {
  IoPool pool(1);
  ServerOptions options;
  options.max_connections = 2;
  Server server(pool.context(), "127.0.0.1", 0, test::echo_handler(), options);
  auto ask = [](Connection& c, uint32_t value) {
    capnp::MallocMessageBuilder request;
    test::make_request(request, value);
    return test::reply_value(c.request(request, 2s).get());
  };
  auto first = Connection::connect(pool.context(), server.address(), 2000ms);
  auto second = Connection::connect(pool.context(), server.address(), 2000ms);
  EXPECT_EQ(ask(*first, 1), 3u);
  EXPECT_EQ(ask(*second, 2), 5u);
  auto third = Connection::connect(pool.context(), server.address(), 2000ms);
  EXPECT_THROW(ask(*third, 3), NetError);
  EXPECT_EQ(server.refused_connections(), 1u);
  // A freed place is taken again.
  first->close();
  ASSERT_TRUE(eventually([&] { return server.connection_count() == 1; }, 2s));
  auto fourth = Connection::connect(pool.context(), server.address(), 2000ms);
  EXPECT_EQ(ask(*fourth, 4), 9u);
}

}  // namespace
}  // namespace moe
