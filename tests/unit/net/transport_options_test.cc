// TransportOptions: --tls auto turns on with a certificate file, on without files names the missing
// flags, a token without TLS is refused unless cleartext tokens are allowed, and the daemon bounds reach
// ServerOptions.
#include <gtest/gtest.h>

#include <functional>

#include "runtime/net/data_link.h"
#include "runtime/net/transport_options.h"

namespace moe {
namespace {

std::string message_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(TransportOptions, AutoIsOnWhenAFileIsGiven) {
  TransportOptions o;
  EXPECT_FALSE(o.tls_enabled());
  EXPECT_EQ(make_tls(o), nullptr);
  o.files.ca = "ca.pem";
  EXPECT_TRUE(o.tls_enabled());
  o.tls = "off";
  EXPECT_FALSE(o.tls_enabled());
  o.tls = "maybe";
  EXPECT_NE(message_of([&] { o.tls_enabled(); }).find("'maybe'"), std::string::npos);
}

TEST(TransportOptions, OnWithoutFilesNamesWhatIsMissing) {
  TransportOptions o;
  o.tls = "on";
  o.files.cert = std::string(MOE_TEST_CERTS_DIR) + "/worker.pem";
  const std::string message = message_of([&] { make_tls(o); });
  EXPECT_NE(message.find("--tls-key --tls-ca"), std::string::npos) << message;
  o.files.key = std::string(MOE_TEST_CERTS_DIR) + "/worker.key";
  o.files.ca = std::string(MOE_TEST_CERTS_DIR) + "/ca.pem";
  EXPECT_NE(make_tls(o), nullptr);
}

TEST(TransportOptions, TokenWithoutTlsNeedsTheCleartextFlag) {
  TransportOptions o;
  EXPECT_EQ(message_of([&] { check_token_transport(o, "", "moe-worker"); }), "(no error)");
  const std::string refused = message_of([&] { check_token_transport(o, "t", "moe-worker"); });
  EXPECT_NE(refused.find("moe-worker"), std::string::npos) << refused;
  EXPECT_NE(refused.find("--allow-cleartext-token"), std::string::npos) << refused;
  o.allow_cleartext_token = true;
  EXPECT_EQ(message_of([&] { check_token_transport(o, "t", "moe-worker"); }), "(no error)");
  TransportOptions with_tls;
  with_tls.files.cert = "x.pem";
  EXPECT_EQ(message_of([&] { check_token_transport(with_tls, "t", "moe-worker"); }), "(no error)");
}

TEST(TransportOptions, BoundsReachServerOptions) {
  TransportOptions o;
  o.max_connections = 7;
  o.idle_timeout_ms = 1234;
  o.connection_budget_bytes = 4096;
  FrameLimits limits;
  limits.max_message_bytes = 1 << 20;
  ServerOptions s = server_options(o, limits);
  EXPECT_EQ(s.max_connections, 7u);
  EXPECT_EQ(s.connection.idle_timeout.count(), 1234);
  EXPECT_EQ(s.connection.budget_bytes, 4096u);
  EXPECT_EQ(s.limits.max_message_bytes, size_t{1} << 20);
}

TEST(TransportOptions, DataTransportIsTcpOrUcxAndUcxRefusesTls) {
  EXPECT_EQ(parse_data_transport("tcp"), DataTransport::Tcp);
  EXPECT_EQ(parse_data_transport("ucx"), DataTransport::Ucx);
  EXPECT_EQ(message_of([] { parse_data_transport("rdma"); }), "--transport must be tcp or ucx, got 'rdma'");
  TransportOptions o;
  o.data_transport = "ucx";
  EXPECT_EQ(message_of([&] { check_data_transport(o); }), "(no error)");
  o.tls = "on";
  EXPECT_NE(message_of([&] { check_data_transport(o); }).find("--transport ucx carries no TLS"), std::string::npos);
  o.data_transport = "tcp";
  EXPECT_EQ(message_of([&] { check_data_transport(o); }), "(no error)");
}

}  // namespace
}  // namespace moe
