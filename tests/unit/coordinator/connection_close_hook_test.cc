// Connection::on_close (the hook the coordinator uses to learn that a worker's registration connection
// closed): runs once on a peer close, on a local close, and at once when registered on a closed one;
// Responder::connection() names the connection a request came on.
#include <gtest/gtest.h>

#include <atomic>

#include "runtime/net/connection.h"
#include "runtime/net/io_pool.h"
#include "runtime/net/server.h"
#include "tests/unit/coordinator/test_worker.h"

namespace moe {
namespace {

using namespace test;

TEST(ConnectionCloseHook, RunsOnceWhenThePeerCloses) {
  IoPool pool(1);
  std::atomic<int> closed{0};
  Server server(pool.context(), "127.0.0.1", 0, [&](Frame, Responder responder) {
    auto connection = responder.connection().lock();
    ASSERT_NE(connection, nullptr);
    connection->on_close([&] { ++closed; });
    capnp::MallocMessageBuilder message;
    message.initRoot<wire::Envelope>().initAck();
    responder.reply(message);
  });
  auto client = Connection::connect(pool.context(), server.address(), 2000ms);
  capnp::MallocMessageBuilder message;
  message.initRoot<wire::Envelope>().setStatus();
  client->request(message, 2000ms).get();
  EXPECT_EQ(closed.load(), 0);
  client->close();
  EXPECT_TRUE(eventually([&] { return closed.load() == 1; }));
  server.stop();
  pool.stop();  // every io thread has finished: a second call of the hook would have happened by now
  EXPECT_EQ(closed.load(), 1);
}

TEST(ConnectionCloseHook, RunsOnLocalCloseAndAtOnceWhenAlreadyClosed) {
  IoPool pool(1);
  Server server(pool.context(), "127.0.0.1", 0, [](Frame, Responder) {});
  auto client = Connection::connect(pool.context(), server.address(), 2000ms);
  int first = 0, late = 0;
  client->on_close([&] { ++first; });
  client->close();
  EXPECT_EQ(first, 1);
  client->close();
  EXPECT_EQ(first, 1);
  client->on_close([&] { ++late; });
  EXPECT_EQ(late, 1);
  server.stop();
  pool.stop();
}

}  // namespace
}  // namespace moe
