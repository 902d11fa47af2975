// The cluster with the forward path over TCP and over UCX (moe-worker --transport ucx, client transport
// "ucx"; control stays on TCP), real daemons on 127.0.0.1: forward parity with LocalEngine and a worker
// SIGKILLed in the middle of a load with no lost call, both ways; over UCX only: a client asking for UCX
// from workers that do not offer it gets a clear error at once, bad frames (malformed, oversized) get a
// typed badRequest while the worker keeps serving, and a request without the cluster token is refused
// as over TCP.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <mutex>
#include <thread>

#include <capnp/message.h>

#include "runtime/client/cluster_client.h"
#include "runtime/net/address.h"
#include "runtime/net/data_link.h"
#include "runtime/net/io_pool.h"
#include "runtime/net/net_error.h"
#include "runtime/net/ucx_context.h"
#include "runtime/net/ucx_stream.h"
#include "runtime/wire/cluster_auth.h"
#include "runtime/wire/envelope_util.h"
#include "tests/integration/failover_util.h"
#include "tests/unit/net/ucx_raw_exchange.h"

namespace moe::integration {
namespace {

TestClusterOptions cluster_with(const std::string& transport, int workers, int replicas) {
  TestClusterOptions o = tiny_cluster(workers, replicas);
  o.worker_flags = {"--transport", transport};
  return o;
}

ClusterClientOptions client_with(const std::string& transport, std::chrono::milliseconds deadline) {
  ClusterClientOptions o = f32_client(deadline);
  o.transport = transport;
  return o;
}

class BothTransports : public ClusterTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(BothTransports, ForwardMatchesLocalEngine) {
  TestCluster& cluster = start_cluster(cluster_with(GetParam(), 2, 1));
  cluster.wait_ready();
  ClusterClient client(cluster.coordinator_address(), client_with(GetParam(), 10s));
  for (const Job& job : reference_jobs(8)) EXPECT_EQ(expect_right(client, job), "") << GetParam();
  // One big call: several frames' worth of tokens on each worker.
  auto reference = tiny_reference();
  Job big;
  big.layer = 1;
  big.x = random_input(2048, reference->spec().hidden_size, 77);
  big.want = reference->forward(big.layer, big.x);
  EXPECT_EQ(expect_right(client, big), "") << GetParam() << ", 2048 tokens";
}

TEST_P(BothTransports, WorkerKilledMidLoadLosesNoCall) {
  // Two replicas of every expert: a call that planned on the killed worker is retried on the other one.
  TestCluster& cluster = start_cluster(cluster_with(GetParam(), 3, 2));
  cluster.wait_ready();
  const auto jobs = reference_jobs(24);
  ClusterClient client(cluster.coordinator_address(), client_with(GetParam(), 10s));
  std::atomic<bool> stop{false};
  std::atomic<int> calls{0}, good{0};
  std::mutex failures_mutex;
  std::vector<std::string> failures;
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      for (size_t n = 0; !stop.load() && n < 20000; ++n) {
        const Job& job = jobs[(t * 5 + n) % jobs.size()];
        const CallResult r = run_call(client, job);
        ++calls;
        good += r.right;
        if (!r.right) {
          std::lock_guard lock(failures_mutex);
          failures.push_back(r.deadline ? "deadline error" : r.problem);
        }
      }
    });
  }
  auto wait_until = [&](auto condition, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!condition() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
    return condition();
  };
  const bool started = wait_until([&] { return good.load() >= 50; }, 15s);
  cluster.kill_worker(1);
  const int good_at_kill = good.load();
  const bool went_on = wait_until([&] { return good.load() >= good_at_kill + 150; }, 20s);
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_TRUE(started) << "the load did not get going: " << good.load() << " right calls";
  EXPECT_TRUE(went_on) << "calls stopped succeeding after the kill: " << good.load() - good_at_kill << " since";
  EXPECT_TRUE(failures.empty()) << failures.size() << " of " << calls.load() << " calls failed, first: "
                                << (failures.empty() ? "" : failures.front());
  EXPECT_GE(client.stats().retries, 1u) << "the kill should have hit calls in flight on worker 1";
  std::cout << GetParam() << ": " << calls.load() << " calls, " << good.load() << " right, "
            << client.stats().retries << " shard retries\n";
}

INSTANTIATE_TEST_SUITE_P(Transport, BothTransports, ::testing::Values("tcp", "ucx"),
                         [](const auto& info) { return info.param; });

class UcxTransport : public ClusterTest {};

TEST_F(UcxTransport, ClientAskingUcxFromTcpOnlyWorkersGetsAClearError) {
  TestCluster& cluster = start_cluster(cluster_with("tcp", 2, 1));
  cluster.wait_ready();
  ClusterClient client(cluster.coordinator_address(), client_with("ucx", 10s));
  const auto jobs = reference_jobs(1);
  const auto started = std::chrono::steady_clock::now();
  try {
    client.forward(jobs[0].layer, jobs[0].x);
    FAIL() << "a forward over UCX to workers without --transport ucx succeeded";
  } catch (const std::exception& e) {
    const std::string what = e.what();
    std::cout << "the error: " << what << "\n";
    EXPECT_NE(what.find("does not offer UCX"), std::string::npos) << what;
    EXPECT_NE(what.find("--transport ucx"), std::string::npos) << what;
  }
  // Not retried until the deadline: the answer will not change.
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
}

// The UCX address the worker at `address` gives (asked over TCP, as a client does).
std::string ucx_address_of(IoPool& pool, const std::string& address, const std::string& token = "") {
  auto tcp = Connection::connect(pool.context(), address, 2000ms);
  capnp::MallocMessageBuilder message;
  message.initRoot<wire::Envelope>().setGetTransports();
  set_cluster_token(message, token);
  Frame reply = tcp->request(message, 2000ms).get();
  tcp->close();
  expect_kind(reply.envelope(), wire::Envelope::TRANSPORTS);
  return reply.envelope().getTransports().getUcx().cStr();
}

// Sends raw bytes over UCX to `ucx` ("host:port") and decodes the one frame that comes back.
Frame raw_ucx_exchange(const std::string& ucx, const std::vector<uint32_t>& words) {
  const HostPort at = parse_host_port(ucx);
  return moe::test::raw_ucx_exchange(at.host, at.port, words);
}

void expect_error(const Frame& reply, wire::ErrorCode code, const std::string& mentions) {
  ASSERT_EQ(reply.envelope().which(), wire::Envelope::ERROR) << message_kind_name(reply.envelope());
  EXPECT_EQ(reply.envelope().getError().getCode(), code) << error_code_name(reply.envelope().getError().getCode());
  const std::string message = reply.envelope().getError().getMessage().cStr();
  EXPECT_NE(message.find(mentions), std::string::npos) << message;
}

TEST_F(UcxTransport, BadFramesGetTypedErrorsAndTheWorkerKeepsServing) {
  TestClusterOptions options = cluster_with("ucx", 2, 1);
  options.worker_flags.insert(options.worker_flags.end(), {"--max-frame-bytes", "65536"});
  TestCluster& cluster = start_cluster(options);
  cluster.wait_ready();
  IoPool pool(1);
  const std::string ucx = ucx_address_of(pool, cluster.worker_address(0));
  ASSERT_FALSE(ucx.empty()) << "worker 0 offers no UCX address";
  // Malformed: a segment table claiming 100000 segments.
  expect_error(raw_ucx_exchange(ucx, {99999, 1, 0, 0}), wire::ErrorCode::BAD_REQUEST, "segment count");
  // Oversized: one segment of 1 MiB against --max-frame-bytes 65536, refused from its header.
  expect_error(raw_ucx_exchange(ucx, {0, 131072}), wire::ErrorCode::BAD_REQUEST, "65536");
  // The worker still serves forwards over UCX, and the cluster answers right.
  ClusterClient client(cluster.coordinator_address(), client_with("ucx", 10s));
  for (const Job& job : reference_jobs(4)) EXPECT_EQ(expect_right(client, job), "");
  EXPECT_TRUE(cluster.worker(0).running());
}

TEST_F(UcxTransport, RequestsWithoutTheClusterTokenAreRefusedOverUcx) {
  TestClusterOptions options = cluster_with("ucx", 1, 1);
  options.cluster_token = "ucx-test-token";
  TestCluster& cluster = start_cluster(options);
  cluster.wait_ready();
  IoPool pool(1);
  const std::string ucx = ucx_address_of(pool, cluster.worker_address(0), "ucx-test-token");
  ASSERT_FALSE(ucx.empty());
  auto connection = Connection::connect_ucx(pool.context(), ucx, 5000ms);
  capnp::MallocMessageBuilder message;
  message.initRoot<wire::Envelope>().setGetPlacement();
  Frame reply = connection->request(message, 5000ms).get();
  expect_error(reply, wire::ErrorCode::UNAUTHORIZED, "token");
  connection->close();
  // With the token, forwards over UCX work.
  ClusterClientOptions with_token = client_with("ucx", 10s);
  with_token.cluster_token = "ucx-test-token";
  ClusterClient client(cluster.coordinator_address(), with_token);
  for (const Job& job : reference_jobs(2)) EXPECT_EQ(expect_right(client, job), "");
}

}  // namespace
}  // namespace moe::integration
