// Connection over UCX (UcxListener + Connection::connect_ucx) on 127.0.0.1: the same frames, request ids,
// out-of-order replies, big tensors, frame limits, malformed bytes (typed badRequest, the server keeps
// serving), a server that goes away (pending requests fail fast) and a port where nothing listens.
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "runtime/net/io_pool.h"
#include "runtime/net/net_error.h"
#include "runtime/net/server.h"
#include "runtime/net/ucx_context.h"
#include "runtime/net/ucx_listener.h"
#include "runtime/wire/tensor_pack.h"
#include "tests/unit/net/net_test_util.h"
#include "tests/unit/net/ucx_raw_exchange.h"

namespace moe {
namespace {

using namespace std::chrono_literals;

std::string ucx_address(const UcxListener& listener) { return "127.0.0.1:" + std::to_string(listener.port()); }

TEST(UcxConnection, RequestGetsItsReply) {
  IoPool pool(2);
  Server server(pool.context(), "127.0.0.1", 0, test::echo_handler());
  UcxListener listener(pool.context(), server, "127.0.0.1", 0);
  ASSERT_NE(listener.port(), 0);
  auto connection = Connection::connect_ucx(pool.context(), ucx_address(listener), 5000ms);
  EXPECT_TRUE(connection->ucx());
  for (uint32_t value : {20u, 7u, 1000u}) {
    capnp::MallocMessageBuilder message;
    test::make_request(message, value);
    EXPECT_EQ(test::reply_value(connection->request(message, 5000ms).get()), value * 2 + 1);
  }
  // The server counts the UCX connection as one of its own.
  EXPECT_EQ(server.connection_count(), 1u);
  connection->close();
  server.stop();
}

TEST(UcxConnection, ManyRequestsWithRepliesOutOfOrder) {
  IoPool pool(2);
  test::HeldRequests held;
  Server server(pool.context(), "127.0.0.1", 0, held.handler());
  UcxListener listener(pool.context(), server, "127.0.0.1", 0);
  auto connection = Connection::connect_ucx(pool.context(), ucx_address(listener), 5000ms);
  constexpr uint32_t kTotal = 64;
  std::vector<std::future<Frame>> futures;
  for (uint32_t i = 0; i < kTotal; ++i) {
    capnp::MallocMessageBuilder message;
    test::make_request(message, i);
    futures.push_back(connection->request(message, 10s));
  }
  auto requests = held.take(kTotal);
  ASSERT_EQ(requests.size(), size_t{kTotal});
  for (auto it = requests.rbegin(); it != requests.rend(); ++it) test::reply_to(it->responder, it->value);
  for (uint32_t i = 0; i < kTotal; ++i) {
    ASSERT_EQ(futures[i].wait_for(5s), std::future_status::ready) << "request " << i;
    EXPECT_EQ(test::reply_value(futures[i].get()), i * 2 + 1);
  }
  connection->close();
}

TEST(UcxConnection, BigTensorTravelsIntact) {
  IoPool pool(2);
  Server server(pool.context(), "127.0.0.1", 0, [](Frame request, Responder responder) {
    auto forward = request.envelope().getForwardRequest();
    capnp::MallocMessageBuilder message;
    auto reply = message.initRoot<wire::Envelope>().initForwardReply();
    reply.setNumTokens(forward.getNumTokens());
    reply.setOutput(forward.getTokens());
    responder.reply(message);
  });
  UcxListener listener(pool.context(), server, "127.0.0.1", 0);
  auto connection = Connection::connect_ucx(pool.context(), ucx_address(listener), 5000ms);
  for (size_t bytes : {size_t{17}, size_t{8} << 20, size_t{70000}}) {
    std::vector<uint8_t> data(bytes);
    for (size_t i = 0; i < bytes; ++i) data[i] = static_cast<uint8_t>(i * 31 + bytes);
    capnp::MallocMessageBuilder message;
    message.initRoot<wire::Envelope>().initForwardRequest().setTokens(capnp::Data::Reader(data.data(), data.size()));
    auto frame = connection->request(message, 20s).get();
    auto output = frame.envelope().getForwardReply().getOutput();
    ASSERT_EQ(output.size(), bytes);
    EXPECT_TRUE(std::equal(output.begin(), output.end(), data.begin())) << bytes << " bytes";
  }
  connection->close();
}

void expect_bad_request(const Frame& reply, const std::string& mentions) {
  ASSERT_EQ(reply.envelope().which(), wire::Envelope::ERROR);
  EXPECT_EQ(reply.envelope().getError().getCode(), wire::ErrorCode::BAD_REQUEST);
  const std::string message = reply.envelope().getError().getMessage().cStr();
  EXPECT_NE(message.find(mentions), std::string::npos) << message;
}

TEST(UcxConnection, OversizedFrameGetsBadRequestFromItsHeader) {
  IoPool pool(2);
  ServerOptions options;
  options.limits.max_message_bytes = 4096;
  Server server(pool.context(), "127.0.0.1", 0, test::echo_handler(), options);
  UcxListener listener(pool.context(), server, "127.0.0.1", 0);
  // One segment of 1 MiB (131072 words): refused from the header, before anything is allocated.
  expect_bad_request(test::raw_ucx_exchange("127.0.0.1", listener.port(), {0, 131072}), "4096");
  // A client that sends the same through Connection fails locally when its own limits say so.
  FrameLimits small;
  small.max_message_bytes = 4096;
  auto client = Connection::connect_ucx(pool.context(), ucx_address(listener), 5000ms, small);
  capnp::MallocMessageBuilder message;
  message.initRoot<wire::Envelope>().initForwardRequest().initTokens(10000);
  EXPECT_THROW(client->request(message, 1s), FrameError);
  // ... and is served as before.
  capnp::MallocMessageBuilder ok;
  test::make_request(ok, 3);
  EXPECT_EQ(test::reply_value(client->request(ok, 5s).get()), 7u);
  client->close();
}

TEST(UcxConnection, MalformedBytesGetBadRequestAndTheServerKeepsServing) {
  IoPool pool(2);
  Server server(pool.context(), "127.0.0.1", 0, test::echo_handler());
  UcxListener listener(pool.context(), server, "127.0.0.1", 0);
  // A segment table claiming 100000 segments.
  expect_bad_request(test::raw_ucx_exchange("127.0.0.1", listener.port(), {99999, 1, 0, 0}), "segment count");
  auto good = Connection::connect_ucx(pool.context(), ucx_address(listener), 5000ms);
  capnp::MallocMessageBuilder small;
  test::make_request(small, 5);
  EXPECT_EQ(test::reply_value(good->request(small, 5s).get()), 11u);
  good->close();
}

TEST(UcxConnection, PendingRequestFailsWhenTheServerGoesAway) {
  IoPool pool(2);
  test::HeldRequests held;
  auto server = std::make_unique<Server>(pool.context(), "127.0.0.1", 0, held.handler());
  auto listener = std::make_unique<UcxListener>(pool.context(), *server, "127.0.0.1", 0);
  auto connection = Connection::connect_ucx(pool.context(), ucx_address(*listener), 5000ms);
  capnp::MallocMessageBuilder message;
  test::make_request(message, 1);
  auto future = connection->request(message, 30s);
  auto requests = held.take(1);
  const auto started = std::chrono::steady_clock::now();
  listener.reset();
  server->stop();
  ASSERT_EQ(future.wait_for(10s), std::future_status::ready);
  try {
    future.get();
    FAIL() << "a request whose server stopped got a reply";
  } catch (const NetError& e) {
    EXPECT_EQ(e.kind(), NetError::Kind::ConnectionClosed) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, 10s);
}

// A connection whose io_context goes away while it is still open (ClusterClient's destructor: close()
// posts the socket's close to the strand, then the pool stops, so that close may never run) must go
// with the io_context, as a TCP socket's operations do. Before the fix the receive waiting inside UCX
// held the Connection (a cycle: nothing freed it), and when the peer went away later the UCX progress
// thread posted the failed read to the strand of the destroyed io_context: heap corruption.
TEST(UcxConnection, ConnectionLeftOpenGoesWithItsIoContext) {
  IoPool server_pool(2);
  auto server = std::make_unique<Server>(server_pool.context(), "127.0.0.1", 0, test::echo_handler());
  UcxListener listener(server_pool.context(), *server, "127.0.0.1", 0);
  std::vector<std::weak_ptr<Connection>> left;
  for (int round = 0; round < 8; ++round) {
    auto pool = std::make_unique<IoPool>(2);
    auto connection = Connection::connect_ucx(pool->context(), ucx_address(listener), 5000ms);
    capnp::MallocMessageBuilder message;
    test::make_request(message, round);
    EXPECT_EQ(test::reply_value(connection->request(message, 5s).get()), round * 2u + 1);
    // Odd rounds close first, as ClusterClient does; even rounds leave the connection open.
    if (round % 2 == 1) connection->close();
    left.push_back(connection);
    connection.reset();
    pool.reset();
    EXPECT_TRUE(left.back().expired()) << "round " << round << ": the Connection outlived its io_context";
  }
  // Each client's endpoint closed with its Connection: the server sees them go.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (server->connection_count() != 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(server->connection_count(), 0u) << "client endpoints left open after their io_contexts went";
  // The peers go away after the clients' io_contexts: nothing may reach those (ASan would tell).
  server->stop();
  server.reset();
  // The process still works over UCX after.
  IoPool pool(1);
  Server again(pool.context(), "127.0.0.1", 0, test::echo_handler());
  UcxListener listener2(pool.context(), again, "127.0.0.1", 0);
  auto connection = Connection::connect_ucx(pool.context(), ucx_address(listener2), 5000ms);
  capnp::MallocMessageBuilder message;
  test::make_request(message, 3);
  EXPECT_EQ(test::reply_value(connection->request(message, 5s).get()), 7u);
  connection->close();
  again.stop();
}

TEST(UcxConnection, ConnectWhereNothingListensFails) {
  IoPool pool(1);
  uint16_t port;
  {
    Server probe(pool.context(), "127.0.0.1", 0, test::echo_handler());
    port = probe.port();
  }
  try {
    Connection::connect_ucx(pool.context(), "127.0.0.1:" + std::to_string(port), 3000ms);
    FAIL() << "connected over UCX to a port where nothing listens";
  } catch (const NetError& e) {
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(port)), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace moe
