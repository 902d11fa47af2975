// A whole cluster with mutual TLS on every connection (client <-> coordinator, workers <-> coordinator,
// client <-> workers, moectl): forwards come back equal to LocalEngine's; a client with a certificate from
// another CA, one with no certificate, or one speaking plain TCP is refused; moectl status works with the
// client certificate; moectl bench cluster --tls prints a cleartext and a TLS row per T; a daemon with a
// cluster token and no TLS refuses to start unless --allow-cleartext-token is given.
#include <gtest/gtest.h>

#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>

#include "runtime/client/cluster_client.h"
#include "runtime/net/address.h"
#include "tests/integration/integration_util.h"

namespace moe::integration {
namespace {

constexpr double kTolerance = 1e-4;

class TlsCluster : public ClusterTest {
 protected:
  TestCluster& start() {
    TestClusterOptions options;
    options.model_flags = tiny_model_flags();
    options.workers = 2;
    options.tls = true;
    TestCluster& cluster = start_cluster(options);
    cluster.wait_ready();
    return cluster;
  }
  static ClusterClientOptions client_options(std::shared_ptr<TlsContext> tls) {
    ClusterClientOptions o;
    o.wire_dtype = wire::DType::F32;
    o.deadline = 10s;
    o.tls = std::move(tls);
    return o;
  }
};

TEST_F(TlsCluster, ForwardsOverMutualTlsMatchLocalEngine) {
  TestCluster& cluster = start();
  EXPECT_NE(cluster.coordinator().log().find("with mutual TLS"), std::string::npos) << cluster.coordinator().log_tail();
  EXPECT_NE(cluster.worker(0).log().find("with mutual TLS"), std::string::npos) << cluster.worker(0).log_tail();
  ClusterClient client(cluster.coordinator_address(), client_options(cluster.client_tls()));
  auto reference = tiny_reference();
  for (int round = 0; round < 3; ++round) {
    for (int32_t layer : client.spec().moe_layers) {
      Matrix x = random_input(32, client.spec().hidden_size, 100 + round * 7 + layer);
      EXPECT_LT(relative_error(client.forward(layer, x), reference->forward(layer, x)), kTolerance)
          << "layer " << layer << ", round " << round;
    }
  }
}

TEST_F(TlsCluster, ClientsWithoutTheClusterCertificateAreRefused) {
  TestCluster& cluster = start();
  // Plain TCP: the coordinator's handshake fails on the first bytes.
  EXPECT_ANY_THROW(ClusterClient(cluster.coordinator_address(), client_options(nullptr)));
  // A certificate from another CA (trusting the cluster's CA, so only the server side can refuse it).
  TlsFiles other = other_ca_tls_files("client");
  other.ca = test_tls_files("client").ca;
  EXPECT_ANY_THROW(ClusterClient(cluster.coordinator_address(), client_options(TlsContext::load(other))));

  // No certificate at all, straight to a worker: no reply, the connection is refused.
  namespace ssl = boost::asio::ssl;
  boost::asio::io_context io;
  ssl::context context(ssl::context::tls_client);
  context.load_verify_file(test_tls_files("client").ca);
  context.set_verify_mode(ssl::verify_peer);
  ssl::stream<boost::asio::ip::tcp::socket> stream(io, context);
  const HostPort worker = parse_host_port(cluster.worker_address(0));
  stream.next_layer().connect({boost::asio::ip::make_address(worker.host), worker.port});
  boost::system::error_code ec;
  stream.handshake(ssl::stream_base::client, ec);
  if (!ec) {  // TLS 1.3: the server's refusal arrives on the first read
    capnp::MallocMessageBuilder message;
    message.initRoot<wire::Envelope>().setGetPlacement();
    auto frame = encode_frame(message);
    boost::asio::write(stream, boost::asio::buffer(frame.begin(), frame.size() * sizeof(capnp::word)), ec);
    std::array<char, 64> buffer;
    stream.read_some(boost::asio::buffer(buffer), ec);
  }
  EXPECT_TRUE(ec) << "a client without a certificate got a reply from the worker";
  // The worker logs the refusal (after closing, so possibly after the client saw it).
  EXPECT_NO_THROW(cluster.worker(0).wait_for_log_line("TLS handshake refused", 5s)) << cluster.worker(0).log_tail();

  // The cluster still serves a client with the right certificate.
  ClusterClient client(cluster.coordinator_address(), client_options(cluster.client_tls()));
  Matrix x = random_input(4, client.spec().hidden_size, 5);
  EXPECT_LT(relative_error(client.forward(0, x), tiny_reference()->forward(0, x)), kTolerance);
}

TEST_F(TlsCluster, MoectlStatusUsesTheClientCertificate) {
  TestCluster& cluster = start();
  const TlsFiles client = test_tls_files("client");
  DaemonProcess with_cert({bin_path("moectl"), "status", "--cluster", cluster.coordinator_address(), "--tls-cert",
                           client.cert, "--tls-key", client.key, "--tls-ca", client.ca},
                          cluster.dir() / "moectl-status.log");
  ASSERT_TRUE(with_cert.wait_exit(30s)) << with_cert.log_tail();
  EXPECT_EQ(with_cert.exit_status(), "exit 0") << with_cert.log_tail();
  EXPECT_NE(with_cert.log().find(cluster.worker_address(1)), std::string::npos) << with_cert.log();

  DaemonProcess without({bin_path("moectl"), "status", "--cluster", cluster.coordinator_address(), "--tls", "off"},
                        cluster.dir() / "moectl-status-plain.log");
  ASSERT_TRUE(without.wait_exit(30s)) << without.log_tail();
  EXPECT_EQ(without.exit_status(), "exit 1") << without.log_tail();
}

TEST(CleartextToken, DaemonsWithATokenAndNoTlsRefuseToStartUnlessAllowed) {
  require_binaries({"moe-coordinator", "moe-worker"});
  const auto dir = std::filesystem::temp_directory_path() / ("moe-cleartext-token-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  DaemonProcess worker({bin_path("moe-worker"), "--coordinator", "127.0.0.1:1", "--cluster-token", "t0k"},
                       dir / "worker.log");
  DaemonProcess coordinator({bin_path("moe-coordinator"), "--listen", "127.0.0.1:0", "--synthetic", "tiny",
                             "--cluster-token", "t0k"},
                            dir / "coordinator.log");
  for (DaemonProcess* p : {&worker, &coordinator}) {
    ASSERT_TRUE(p->wait_exit(20s)) << p->log_tail();
    EXPECT_NE(p->exit_status(), "exit 0");
    EXPECT_NE(p->log().find("--allow-cleartext-token"), std::string::npos) << p->log();
  }
  // Allowed: the coordinator starts (its listen line), and --check-config passes with TLS files given.
  DaemonProcess allowed({bin_path("moe-coordinator"), "--listen", "127.0.0.1:0", "--synthetic", "tiny",
                         "--cluster-token", "t0k", "--allow-cleartext-token"},
                        dir / "allowed.log");
  allowed.wait_for_log_line("moe-coordinator listening on ", 20s);
  const TlsFiles files = test_tls_files("worker");
  DaemonProcess with_tls({bin_path("moe-worker"), "--coordinator", "127.0.0.1:1", "--cluster-token", "t0k",
                          "--tls-cert", files.cert, "--tls-key", files.key, "--tls-ca", files.ca, "--check-config"},
                         dir / "with-tls.log");
  ASSERT_TRUE(with_tls.wait_exit(20s)) << with_tls.log_tail();
  EXPECT_EQ(with_tls.exit_status(), "exit 0") << with_tls.log();
  std::error_code ignored;
  if (!::testing::Test::HasFailure()) std::filesystem::remove_all(dir, ignored);
}

TEST(TlsBench, BenchClusterTlsPrintsCleartextAndTlsRows) {
  require_binaries({"moe-coordinator", "moe-worker", "moectl"});
  const auto dir = std::filesystem::temp_directory_path() / ("moe-bench-tls-test-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  DaemonProcess bench({bin_path("moectl"), "bench", "cluster", "--tls", "--workers", "1", "--synthetic", "tiny",
                       "--trivial", "tiny", "--tokens", "1,16", "--min-seconds", "0.05"},
                      dir / "bench.log");
  ASSERT_TRUE(bench.wait_exit(180s)) << bench.log_tail();
  const std::string out = bench.log();
  EXPECT_EQ(bench.exit_status(), "exit 0") << out;
  EXPECT_NE(out.find("mutual TLS on every connection"), std::string::npos) << out;
  for (const char* row : {"     1  cleartext", "     1        tls", "    16  cleartext", "    16        tls"}) {
    EXPECT_NE(out.find(row), std::string::npos) << "no row '" << row << "' in:\n" << out;
  }
  std::error_code ignored;
  if (!::testing::Test::HasFailure()) std::filesystem::remove_all(dir, ignored);
}

}  // namespace
}  // namespace moe::integration
