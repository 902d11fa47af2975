// A minimal reproduction the chaos suite's hostile peer led to: a stranger's heartbeats, sent in the
// name of a worker that has stopped (SIGSTOP), must not keep that worker's lease alive on a cluster
// with a cluster token. The worker must be declared dead within a few leases, as without the stranger.
#include <gtest/gtest.h>

#include <capnp/message.h>

#include <csignal>
#include <thread>

#include "runtime/wire/moe.capnp.h"
#include "tests/chaos/chaos_cluster.h"
#include "tests/integration/integration_util.h"
#include "tests/integration/raw_connection.h"

namespace moe::chaos {
namespace {

using namespace std::chrono_literals;

TEST(HostileHeartbeat, StrangersHeartbeatsDoNotKeepAStoppedWorkersLease) {
  integration::require_binaries({"moe-coordinator", "moe-worker"});
  ChaosClusterOptions o;
  o.name = "hostile-heartbeat";
  o.cluster_token = "the-real-token";
  ChaosCluster cluster(o);
  const ClusterStatus ready = cluster.wait_ready(20s);
  const integration::StatusWorker* victim = ready.find(cluster.worker_address(1));
  ASSERT_NE(victim, nullptr);
  const uint32_t id = victim->id;

  cluster.stop_worker(1);
  integration::RawConnection stranger(cluster.coordinator_address());
  const auto start = std::chrono::steady_clock::now();
  const auto limit = start + std::chrono::milliseconds(4 * o.lease_ms);
  bool dead = false;
  std::string last_reply = "none";
  while (!dead && std::chrono::steady_clock::now() < limit) {
    capnp::MallocMessageBuilder message;
    auto envelope = message.initRoot<wire::Envelope>();
    envelope.setRequestId(7);
    auto heartbeat = envelope.initHeartbeat();
    heartbeat.setWorkerId(id);
    heartbeat.setEpoch(ready.epoch);
    heartbeat.setWindowMs(100);
    if (!stranger.write_message(message)) break;  // the coordinator closed on the stranger: fine
    const auto reply = stranger.read_reply(500ms);
    last_reply = reply.kind == integration::RawConnection::Reply::Kind::Frame
                     ? std::string(reply.frame.envelope().which() == wire::Envelope::ERROR ? "an error" : "a heartbeatReply")
                     : reply.detail;
    if (const auto s = cluster.status()) {
      const integration::StatusWorker* w = s->find(cluster.worker_address(1));
      dead = w == nullptr || w->state == wire::WorkerState::DEAD;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(o.heartbeat_ms));
  }
  cluster.continue_worker(1);
  EXPECT_TRUE(dead) << "worker " << id << " stayed alive for " << 4 * o.lease_ms
                    << " ms while SIGSTOPped, on a stranger's heartbeats without the cluster token (last reply: "
                    << last_reply << ")\n"
                    << cluster.logs();
}

}  // namespace
}  // namespace moe::chaos
