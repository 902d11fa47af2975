// MetricsHttpServer and MetricsEndpoint: /metrics in the text format with moe_build_info and the
// registry's metrics, 404 elsewhere, HEAD without a body, many scrapes in a row, a clear bind error,
// port 0 on an endpoint meaning "no server", and a bearer token required when one is set.
#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <prometheus/counter.h>

#include <string>

#include "runtime/metrics/metrics_endpoint.h"

namespace moe {
namespace {

std::string http(uint16_t port, const std::string& request) {
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket socket(io);
  socket.connect({boost::asio::ip::make_address("127.0.0.1"), port});
  boost::asio::write(socket, boost::asio::buffer(request));
  std::string reply;
  boost::system::error_code ec;
  boost::asio::read(socket, boost::asio::dynamic_buffer(reply), ec);  // until the server closes
  return reply;
}

TEST(MetricsHttpServer, ServesTheRegistryInTheTextFormat) {
  MetricsEndpoint endpoint("127.0.0.1", 0, "test", "cpu");  // registry + moe_build_info, no server
  EXPECT_EQ(endpoint.port(), 0);
  MetricsHttpServer server("127.0.0.1", 0, endpoint.shared_registry());
  ASSERT_GT(server.port(), 0);
  prometheus::BuildCounter().Name("moe_test_things_total").Help("Things").Register(endpoint.registry()).Add({}).Increment(3);
  for (int i = 0; i < 20; ++i) {
    const std::string reply = http(server.port(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    ASSERT_EQ(reply.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << reply;
    EXPECT_NE(reply.find("text/plain; version=0.0.4"), std::string::npos);
    EXPECT_NE(reply.find("moe_test_things_total 3"), std::string::npos) << reply;
    EXPECT_NE(reply.find("moe_build_info{"), std::string::npos) << reply;
  }
}

TEST(MetricsHttpServer, OtherPathsAndMethods) {
  MetricsHttpServer endpoint("127.0.0.1", 0, std::make_shared<prometheus::Registry>());
  EXPECT_EQ(http(endpoint.port(), "GET /nope HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 404", 0), 0u);
  EXPECT_EQ(http(endpoint.port(), "POST /metrics HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 405", 0), 0u);
  const std::string head = http(endpoint.port(), "HEAD /metrics HTTP/1.1\r\n\r\n");
  ASSERT_EQ(head.rfind("HTTP/1.1 200 OK", 0), 0u);
  EXPECT_EQ(head.substr(head.find("\r\n\r\n") + 4), "");  // no body after the headers
  EXPECT_EQ(http(endpoint.port(), "GET /metrics?x=1 HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 200", 0), 0u);
}

TEST(MetricsHttpServer, WithATokenAScrapeNeedsItAsABearer) {
  MetricsHttpServer server("127.0.0.1", 0, std::make_shared<prometheus::Registry>(), "s3cret-token");
  const auto status = [&](const std::string& headers) {
    const std::string reply = http(server.port(), "GET /metrics HTTP/1.1\r\nHost: x\r\n" + headers + "\r\n");
    return reply.substr(0, reply.find("\r\n"));
  };
  EXPECT_EQ(status(""), "HTTP/1.1 401 Unauthorized");
  EXPECT_EQ(status("Authorization: Bearer wrong-token\r\n"), "HTTP/1.1 401 Unauthorized");
  EXPECT_EQ(status("Authorization: Bearer s3cret-tokenX\r\n"), "HTTP/1.1 401 Unauthorized");
  EXPECT_EQ(status("Authorization: Bearer s3cret\r\n"), "HTTP/1.1 401 Unauthorized");
  EXPECT_EQ(status("Authorization: Basic czNjcmV0LXRva2Vu\r\n"), "HTTP/1.1 401 Unauthorized");
  EXPECT_EQ(status("X-Authorization: Bearer s3cret-token\r\n"), "HTTP/1.1 401 Unauthorized");
  EXPECT_EQ(status("Authorization: Bearer s3cret-token\r\n"), "HTTP/1.1 200 OK");
  EXPECT_EQ(status("authorization:   bearer s3cret-token  \r\n"), "HTTP/1.1 200 OK") << "names and scheme are case-insensitive";
  const std::string refused = http(server.port(), "GET /metrics HTTP/1.1\r\n\r\n");
  EXPECT_NE(refused.find("WWW-Authenticate: Bearer"), std::string::npos) << refused;
  EXPECT_EQ(refused.find("moe_"), std::string::npos) << "no metric in a refused reply";
}

TEST(MetricsEndpoint, ServesOnItsPortAndABusyPortIsAClearError) {
  uint16_t port = 0;
  {
    MetricsHttpServer probe("127.0.0.1", 0, std::make_shared<prometheus::Registry>());
    port = probe.port();
  }  // a port that was free a moment ago
  MetricsEndpoint endpoint("127.0.0.1", port, "worker", "cpu");
  EXPECT_EQ(endpoint.port(), port);
  const std::string reply = http(port, "GET /metrics HTTP/1.1\r\n\r\n");
  EXPECT_NE(reply.find("moe_build_info{"), std::string::npos) << reply;
  EXPECT_NE(reply.find("component=\"worker\""), std::string::npos) << reply;
  try {
    MetricsEndpoint clash("127.0.0.1", port, "test", "cpu");
    FAIL() << "bound a port that is in use";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot serve /metrics on 127.0.0.1:" + std::to_string(port)),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace moe
