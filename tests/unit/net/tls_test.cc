// Mutual TLS on Connection/Server: requests and replies over TLS; a client with no certificate, with one
// from another CA, or speaking plain TCP is refused during the handshake and never reaches the handler;
// a client that does not trust the server's CA refuses it; bad certificate files fail with their names.
// Certificates come from ops/tls/make-dev-certs.sh, run at build time (MOE_TEST_CERTS_DIR).
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>

#include <boost/asio/ssl.hpp>

#include "runtime/net/io_pool.h"
#include "runtime/net/net_error.h"
#include "runtime/net/server.h"
#include "runtime/net/tls_context.h"
#include "tests/unit/net/net_test_util.h"

namespace moe {
namespace {

using namespace std::chrono_literals;
using test::eventually;

std::string certs(const std::string& file) { return std::string(MOE_TEST_CERTS_DIR) + "/" + file; }
std::string other_ca(const std::string& file) { return std::string(MOE_TEST_OTHER_CA_DIR) + "/" + file; }

std::shared_ptr<TlsContext> node_tls(const std::string& name) {
  return TlsContext::load({certs(name + ".pem"), certs(name + ".key"), certs("ca.pem")});
}

// A TLS server counting the requests that reach its handler.
struct TlsServer {
  IoPool pool{2, node_tls("worker")};
  std::atomic<int> handled{0};
  Server server{pool.context(), "127.0.0.1", 0, [this](Frame request, Responder responder) {
                  ++handled;
                  test::reply_to(responder, test::request_value(request));
                }};
};

TEST(Tls, MutualTlsCarriesRequestsAndReplies) {
  TlsServer s;
  EXPECT_TRUE(s.server.tls());
  IoPool client_pool(1, node_tls("client"));
  auto connection = Connection::connect(client_pool.context(), s.server.address(), 2000ms);
  EXPECT_TRUE(connection->tls());
  for (uint32_t value : {1u, 7u, 40000u}) {
    capnp::MallocMessageBuilder request;
    test::make_request(request, value);
    EXPECT_EQ(test::reply_value(connection->request(request, 2s).get()), value * 2 + 1);
  }
  EXPECT_EQ(s.handled, 3);
  connection->close();
}

TEST(Tls, ClientFromAnotherCaIsRefusedByTheServer) {
  TlsServer s;
  // Trusts the cluster CA (so it accepts the server) but holds a certificate from another CA.
  IoPool client_pool(1, TlsContext::load({other_ca("client.pem"), other_ca("client.key"), certs("ca.pem")}));
  std::shared_ptr<Connection> connection;
  try {
    connection = Connection::connect(client_pool.context(), s.server.address(), 2000ms);
  } catch (const NetError&) {
    // TLS 1.2 refuses during the client's handshake already.
  }
  if (connection) {
    // TLS 1.3: the client's handshake ends before the server checks its certificate; the server's
    // refusal closes the connection, so the request fails.
    capnp::MallocMessageBuilder request;
    test::make_request(request, 3);
    EXPECT_THROW(connection->request(request, 3s).get(), NetError);
    EXPECT_TRUE(eventually([&] { return !connection->is_open(); }));
  }
  EXPECT_EQ(s.handled, 0);
}

TEST(Tls, ServerFromAnotherCaIsRefusedByTheClient) {
  TlsServer s;
  IoPool client_pool(1, TlsContext::load({other_ca("client.pem"), other_ca("client.key"), other_ca("ca.pem")}));
  try {
    Connection::connect(client_pool.context(), s.server.address(), 2000ms);
    FAIL() << "connect to a server whose certificate is from another CA succeeded";
  } catch (const NetError& e) {
    EXPECT_EQ(e.kind(), NetError::Kind::ConnectFailed);
    EXPECT_NE(std::string(e.what()).find("TLS handshake"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("certificate verify failed"), std::string::npos) << e.what();
  }
  EXPECT_EQ(s.handled, 0);
}

TEST(Tls, ClientWithoutCertificateIsRefused) {
  TlsServer s;
  namespace ssl = boost::asio::ssl;
  boost::asio::io_context io;
  ssl::context context(ssl::context::tls_client);
  context.load_verify_file(certs("ca.pem"));
  context.set_verify_mode(ssl::verify_peer);
  ssl::stream<boost::asio::ip::tcp::socket> stream(io, context);
  stream.next_layer().connect({boost::asio::ip::make_address("127.0.0.1"), s.server.port()});
  boost::system::error_code ec;
  stream.handshake(ssl::stream_base::client, ec);
  if (!ec) {
    // TLS 1.3 lets the client finish first; the server's refusal arrives on the first read.
    capnp::MallocMessageBuilder request;
    test::make_request(request, 5);
    auto frame = encode_frame(request);
    boost::asio::write(stream, boost::asio::buffer(frame.begin(), frame.size() * sizeof(capnp::word)), ec);
    std::array<char, 64> buffer;
    stream.read_some(boost::asio::buffer(buffer), ec);
  }
  EXPECT_TRUE(ec) << "a client without a certificate was answered";
  EXPECT_EQ(s.handled, 0);
}

TEST(Tls, PlainTcpClientIsRefused) {
  TlsServer s;
  IoPool plain_pool(1);
  auto connection = Connection::connect(plain_pool.context(), s.server.address(), 2000ms);
  EXPECT_FALSE(connection->tls());
  capnp::MallocMessageBuilder request;
  test::make_request(request, 9);
  EXPECT_THROW(connection->request(request, 3s).get(), NetError);
  EXPECT_EQ(s.handled, 0);
}

TEST(Tls, BadFilesAreNamed) {
  auto message_of = [](const TlsFiles& files) {
    try {
      TlsContext::load(files);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("(loaded)");
  };
  EXPECT_NE(message_of({certs("nope.pem"), certs("client.key"), certs("ca.pem")}).find("--tls-cert"), std::string::npos);
  EXPECT_NE(message_of({certs("client.pem"), certs("client.key"), ""}).find("--tls-ca"), std::string::npos);
  const std::string mismatch = message_of({certs("client.pem"), certs("worker.key"), certs("ca.pem")});
  EXPECT_NE(mismatch.find("--tls-key"), std::string::npos) << mismatch;
}

}  // namespace
}  // namespace moe
