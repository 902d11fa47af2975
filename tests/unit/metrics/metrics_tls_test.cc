// MetricsHttpServer over TLS (a daemon's /metrics with --tls): a scraper holding a certificate from the
// cluster CA and the token gets the metrics over HTTPS; one with no certificate, or one from another CA,
// is refused at the handshake; plain HTTP on the TLS port gets no HTTP answer. Certificates are the
// build's test certificates (tests/CMakeLists.txt, MOE_TEST_CERTS_DIR).
#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <prometheus/counter.h>

#include <string>

#include "runtime/metrics/metrics_endpoint.h"
#include "runtime/net/tls_context.h"

namespace moe {
namespace {

namespace asio = boost::asio;
namespace ssl = asio::ssl;

TlsFiles files(const std::string& dir, const std::string& name) {
  return {dir + "/" + name + ".pem", dir + "/" + name + ".key", dir + "/ca.pem"};
}

struct Scrape {
  std::string reply;    // what came back (empty when the handshake failed)
  std::string failure;  // the handshake or read error, if any
};

// GET /metrics over TLS with `client` (nullptr: no client certificate, trusting `ca`).
Scrape https_get(uint16_t port, const TlsFiles* client, const std::string& ca, const std::string& token) {
  ssl::context context(ssl::context::tls_client);
  context.load_verify_file(ca);
  context.set_verify_mode(ssl::verify_peer);
  if (client) {
    context.use_certificate_chain_file(client->cert);
    context.use_private_key_file(client->key, ssl::context::pem);
  }
  asio::io_context io;
  ssl::stream<asio::ip::tcp::socket> stream(io, context);
  stream.next_layer().connect({asio::ip::make_address("127.0.0.1"), port});
  Scrape out;
  boost::system::error_code ec;
  stream.handshake(ssl::stream_base::client, ec);
  if (ec) {
    out.failure = "handshake: " + tls_error_text(ec);
    return out;
  }
  const std::string request = "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + "\r\n\r\n";
  asio::write(stream, asio::buffer(request), ec);
  if (!ec) asio::read(stream, asio::dynamic_buffer(out.reply), ec);  // until the server closes
  if (ec && ec != asio::error::eof && ec != ssl::error::stream_truncated) out.failure = "read: " + tls_error_text(ec);
  return out;
}

class MetricsTls : public ::testing::Test {
 protected:
  void SetUp() override {
    tls_ = TlsContext::load(files(MOE_TEST_CERTS_DIR, "worker"));
    endpoint_ = std::make_unique<MetricsEndpoint>("127.0.0.1", 0, "test", "cpu");  // the registry only
    prometheus::BuildCounter().Name("moe_test_things_total").Help("Things").Register(endpoint_->registry()).Add({}).Increment(2);
    server_ = std::make_unique<MetricsHttpServer>("127.0.0.1", 0, endpoint_->shared_registry(), "tok", shared_native(tls_));
  }
  std::shared_ptr<TlsContext> tls_;
  std::unique_ptr<MetricsEndpoint> endpoint_;
  std::unique_ptr<MetricsHttpServer> server_;
};

TEST_F(MetricsTls, AClientCertificateFromTheCaAndTheTokenGetTheMetrics) {
  ASSERT_TRUE(server_->tls());
  const TlsFiles client = files(MOE_TEST_CERTS_DIR, "client");
  const Scrape ok = https_get(server_->port(), &client, client.ca, "tok");
  EXPECT_EQ(ok.failure, "");
  EXPECT_EQ(ok.reply.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << ok.reply;
  EXPECT_NE(ok.reply.find("moe_test_things_total 2"), std::string::npos) << ok.reply;
  const Scrape no_token = https_get(server_->port(), &client, client.ca, "wrong");
  EXPECT_EQ(no_token.reply.rfind("HTTP/1.1 401", 0), 0u) << no_token.reply << no_token.failure;
}

TEST_F(MetricsTls, NoCertificateOrAnotherCasIsRefusedAndPlainHttpGetsNoAnswer) {
  const TlsFiles client = files(MOE_TEST_CERTS_DIR, "client");
  const TlsFiles other = files(MOE_TEST_OTHER_CA_DIR, "client");
  // With TLS 1.3 the client's handshake may finish before the server checks its certificate: the
  // refusal then shows as no HTTP reply.
  const Scrape none = https_get(server_->port(), nullptr, client.ca, "tok");
  EXPECT_EQ(none.reply.find("HTTP/1.1"), std::string::npos) << none.reply;
  const Scrape wrong_ca = https_get(server_->port(), &other, client.ca, "tok");
  EXPECT_EQ(wrong_ca.reply.find("HTTP/1.1"), std::string::npos) << wrong_ca.reply;

  asio::io_context io;
  asio::ip::tcp::socket socket(io);
  socket.connect({asio::ip::make_address("127.0.0.1"), server_->port()});
  asio::write(socket, asio::buffer(std::string("GET /metrics HTTP/1.1\r\nAuthorization: Bearer tok\r\n\r\n")));
  std::string reply;
  boost::system::error_code ec;
  asio::read(socket, asio::dynamic_buffer(reply), ec);
  EXPECT_EQ(reply.find("HTTP/1.1"), std::string::npos) << "plain HTTP answered on the TLS port: " << reply;
  EXPECT_EQ(reply.find("moe_test_things_total"), std::string::npos);
}

}  // namespace
}  // namespace moe
