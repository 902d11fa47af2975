// Issue 12's reproduction as a test: a client pipelines 2,000 forwards whose replies are 1 MiB each and
// does not read them. The worker must push back (stop reading that client's requests once its budget of
// in-flight bytes is spent) instead of buffering everything: its resident memory (VmRSS from /proc) grows
// by less than 256 MiB over the whole run, while another client is still served, and every one of the
// 2,000 replies arrives once the slow client reads. Before the fix the worker took all 2 GB of requests
// and replies in.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <thread>

#include "runtime/client/cluster_client.h"
#include "tests/integration/integration_util.h"
#include "tests/integration/raw_connection.h"

namespace moe::integration {
namespace {

constexpr size_t kForwards = 2000;
constexpr uint64_t kMaxGrowth = 256ull << 20;


class SlowReader : public ClusterTest {};

TEST_F(SlowReader, WorkerMemoryStaysBoundedAndEveryReplyArrives) {
  TestClusterOptions options;
  options.model_flags = {"--synthetic", "wire", "--seed", "0"};  // hidden 2048, almost no expert compute
  options.workers = 1;
  TestCluster& cluster = start_cluster(options);
  const ClientPlacement placement = cluster.wait_ready();
  const uint32_t id = TestCluster::worker_id(placement, cluster.worker_address(0));
  int32_t hosted = -1;
  for (int32_t e = 0; e < 8 && hosted < 0; ++e)
    for (const auto& r : placement.replicas(0, e))
      if (r.worker_id == id) hosted = e;
  ASSERT_GE(hosted, 0);

  // One forward: 128 tokens x 2048 in f32 = 1 MiB in, 1 MiB of partial sums back; 8 tokens routed.
  constexpr uint32_t kHidden = 2048, kTokens = 128, kRouted = 8;
  const auto frame = raw_forward_frame(placement.epoch(), kHidden, kTokens, kRouted, hosted);

  const pid_t worker = cluster.worker(0).pid();
  const uint64_t baseline = resident_bytes(worker);
  ASSERT_GT(baseline, 0u);
  uint64_t peak = baseline;
  auto sample = [&] { peak = std::max(peak, resident_bytes(worker)); };

  RawConnection slow(cluster.worker_address(0));
  std::atomic<size_t> written{0};
  std::atomic<bool> write_failed{false};
  std::thread writer([&] {
    for (size_t i = 0; i < kForwards; ++i) {
      if (!slow.write(frame_bytes(frame))) {
        write_failed = true;
        return;
      }
      ++written;
    }
  });
  struct Join {  // on every way out: a blocked write ends when the socket is shut down
    std::thread& thread;
    RawConnection& connection;
    ~Join() {
      connection.shutdown_write();
      thread.join();
    }
  } join{writer, slow};

  // Phase 1, not reading: until every request is written, or the writes have stalled for 3 s (the
  // worker stopped reading). Bounded by 120 s.
  const auto phase1_end = std::chrono::steady_clock::now() + 120s;
  size_t last = 0;
  auto last_progress = std::chrono::steady_clock::now();
  while (written < kForwards && std::chrono::steady_clock::now() < phase1_end && !write_failed) {
    sample();
    if (written != last) {
      last = written;
      last_progress = std::chrono::steady_clock::now();
    } else if (std::chrono::steady_clock::now() - last_progress > 3s) {
      break;
    }
    std::this_thread::sleep_for(20ms);
  }
  sample();
  const size_t written_unread = written;
  std::cout << "slow reader: " << written_unread << " of " << kForwards << " requests written before reading; worker RSS "
            << baseline / (1 << 20) << " -> peak " << peak / (1 << 20) << " MiB\n";

  // Another client is served meanwhile.
  {
    ClusterClientOptions co;
    co.wire_dtype = wire::DType::F32;
    co.deadline = 20s;
    ClusterClient other(cluster.coordinator_address(), co);
    Matrix x = random_input(4, kHidden, 3);
    EXPECT_EQ(other.forward(0, x).rows, 4);
  }

  // Phase 2: read every reply (the writer goes on as the worker drains). Bounded per reply and overall.
  size_t replies = 0, errors = 0;
  const auto phase2_end = std::chrono::steady_clock::now() + 180s;
  std::string last_error;
  while (replies < kForwards && std::chrono::steady_clock::now() < phase2_end) {
    RawConnection::Reply reply = slow.read_reply(20s);
    if (reply.kind != RawConnection::Reply::Kind::Frame) {
      last_error = reply.detail;
      break;
    }
    ++replies;
    if (reply.frame.envelope().which() != wire::Envelope::FORWARD_REPLY) ++errors;
    if (replies % 25 == 0) sample();
  }
  sample();
  std::cout << "slow reader: " << replies << " replies read (" << errors << " not forwardReply); worker RSS peak "
            << peak / (1 << 20) << " MiB, growth " << (peak - baseline) / (1 << 20) << " MiB\n";

  EXPECT_EQ(replies, kForwards) << "reading stopped: " << last_error;
  EXPECT_EQ(errors, 0u);
  EXPECT_FALSE(write_failed);
  EXPECT_LT(peak - baseline, kMaxGrowth) << "worker RSS grew from " << baseline / (1 << 20) << " to " << peak / (1 << 20)
                                         << " MiB";
}

}  // namespace
}  // namespace moe::integration
