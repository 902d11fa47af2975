// --max-queue counts a forward until its reply is written (issue 12): a client pipelines forwards whose
// 1 MiB replies it never reads. Once the socket buffers are full, the worker holds max-queue replies it
// cannot write; from then on every further forward, from any client, is answered `overloaded`
// (retryable), and moe_worker_forwards_in_flight shows the bound reached. When the slow client closes
// its socket the slots come back: forwards are served again and the gauge returns to 0. Before the fix
// the count dropped as soon as a job had computed, so a slow reader never triggered the bound.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <regex>
#include <thread>

#include "runtime/client/local_cluster.h"
#include "runtime/wire/envelope_util.h"
#include "tests/integration/integration_util.h"
#include "tests/integration/observability/http_get.h"
#include "tests/integration/raw_connection.h"

namespace moe::integration {
namespace {

constexpr uint32_t kMaxQueue = 4;
constexpr uint32_t kHidden = 2048;  // the "wire" synthetic model
constexpr size_t kSlowForwards = 64;

// A forward of `tokens` rows to `expert` of layer 0, every row routed to it.
kj::Array<capnp::word> forward_frame(uint64_t epoch, int32_t expert, uint32_t tokens) {
  return raw_forward_frame(epoch, kHidden, tokens, tokens, expert);
}

// The value of an unlabelled gauge in a /metrics body, or -1 when it is not there.
double gauge_value(const std::string& body, const std::string& name) {
  std::smatch match;
  if (std::regex_search(body, match, std::regex("\n" + name + " ([0-9.eE+-]+)"))) return std::stod(match[1]);
  return -1;
}

class MaxQueue : public ClusterTest {};

TEST_F(MaxQueue, UnreadRepliesCountUntilWrittenAndComeBackWhenTheSocketCloses) {
  TestClusterOptions options;
  options.model_flags = {"--synthetic", "wire", "--seed", "0"};
  options.workers = 1;
  const uint16_t metrics_port = pick_free_port();
  options.worker_flags = {"--max-queue", std::to_string(kMaxQueue), "--metrics-port", std::to_string(metrics_port)};
  TestCluster& cluster = start_cluster(options);
  const ClientPlacement placement = cluster.wait_ready();
  const uint32_t id = TestCluster::worker_id(placement, cluster.worker_address(0));
  int32_t hosted = -1;
  for (int32_t e = 0; e < 8 && hosted < 0; ++e)
    for (const auto& r : placement.replicas(0, e))
      if (r.worker_id == id) hosted = e;
  ASSERT_GE(hosted, 0);

  auto in_flight_gauge = [&] {
    return gauge_value(http_get("127.0.0.1", metrics_port, "/metrics").body, "moe_worker_forwards_in_flight");
  };
  EXPECT_EQ(gauge_value(http_get("127.0.0.1", metrics_port, "/metrics").body, "moe_worker_max_queue"), kMaxQueue);

  // A probe: one small forward on its own connection; returns the reply's kind ("forwardReply" or the
  // error code's name) and message.
  const auto probe_frame = forward_frame(placement.epoch(), hosted, 1);
  auto probe = [&](std::string* message) -> std::string {
    RawConnection connection(cluster.worker_address(0));
    if (!connection.write(frame_bytes(probe_frame))) return "write failed";
    RawConnection::Reply reply = connection.read_reply(10s);
    if (reply.kind != RawConnection::Reply::Kind::Frame) return "no reply: " + reply.detail;
    auto envelope = reply.frame.envelope();
    if (envelope.which() == wire::Envelope::FORWARD_REPLY) return "forwardReply";
    if (envelope.which() != wire::Envelope::ERROR) return "unexpected " + message_kind_name(envelope.which());
    if (message) *message = envelope.getError().getMessage().cStr();
    return error_code_name(envelope.getError().getCode());
  };
  ASSERT_EQ(probe(nullptr), "forwardReply");

  // The slow client: 64 forwards of 128 rows (1 MiB in, 1 MiB of partial sums back), never read.
  const auto slow_frame = forward_frame(placement.epoch(), hosted, 128);
  auto slow = std::make_unique<RawConnection>(cluster.worker_address(0));
  std::atomic<size_t> written{0};
  std::thread writer([&] {
    for (size_t i = 0; i < kSlowForwards; ++i) {
      if (!slow->write(frame_bytes(slow_frame))) return;
      ++written;
    }
  });
  struct Join {  // on every way out: a blocked write ends when the socket is shut down
    std::thread& thread;
    std::unique_ptr<RawConnection>& connection;
    ~Join() {
      if (connection) connection->shutdown_write();
      thread.join();
    }
  } join{writer, slow};

  // Until the writes end or stall for 2 s (the worker answers or stops reading): bounded by 60 s.
  const auto writes_end = std::chrono::steady_clock::now() + 60s;
  size_t last = 0;
  auto last_progress = std::chrono::steady_clock::now();
  while (written < kSlowForwards && std::chrono::steady_clock::now() < writes_end) {
    if (written != last) {
      last = written;
      last_progress = std::chrono::steady_clock::now();
    } else if (std::chrono::steady_clock::now() - last_progress > 2s) {
      break;
    }
    std::this_thread::sleep_for(20ms);
  }
  std::cout << "slow client: " << written << " of " << kSlowForwards << " forwards written\n";

  // The worker now holds replies it cannot write: max-queue of them. Another client is told
  // `overloaded` (polled: the slow client's last requests may still be computing), naming the bound.
  std::string kind, message;
  double held = -1;
  const auto overloaded_by = std::chrono::steady_clock::now() + 20s;
  do {
    kind = probe(&message);
    held = in_flight_gauge();
    if (kind == "overloaded" && held == kMaxQueue) break;
    std::this_thread::sleep_for(50ms);
  } while (std::chrono::steady_clock::now() < overloaded_by);
  EXPECT_EQ(kind, "overloaded") << message;
  EXPECT_NE(message.find("--max-queue"), std::string::npos) << message;
  EXPECT_EQ(held, kMaxQueue) << "moe_worker_forwards_in_flight";

  // The slow client goes away without reading: its unwritten replies are dropped, the slots come back.
  slow->shutdown_write();
  writer.join();
  writer = std::thread([] {});
  slow.reset();
  const auto recovered_by = std::chrono::steady_clock::now() + 20s;
  do {
    kind = probe(&message);
    held = in_flight_gauge();
    if (kind == "forwardReply" && held == 0) break;
    std::this_thread::sleep_for(50ms);
  } while (std::chrono::steady_clock::now() < recovered_by);
  EXPECT_EQ(kind, "forwardReply") << message;
  EXPECT_EQ(held, 0) << "moe_worker_forwards_in_flight after the slow client closed";
}

}  // namespace
}  // namespace moe::integration
