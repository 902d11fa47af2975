// A minimal reproduction the chaos suite's hostile peer led to (test_chaos --schedule=process --seed=2):
// a stranger sends a well-formed commit of an empty placement for an epoch far ahead, and its release,
// to a worker of a cluster without a cluster token. Epoch-moving messages should come only from the registered
// coordinator: the cluster must keep serving, so a client's calls are right again within 5 s.
#include <gtest/gtest.h>

#include <capnp/message.h>

#include <thread>

#include "cli/bench_checked_load.h"
#include "runtime/wire/moe.capnp.h"
#include "tests/chaos/chaos_cluster.h"
#include "tests/integration/integration_util.h"
#include "tests/integration/raw_connection.h"

namespace moe::chaos {
namespace {

using namespace std::chrono_literals;

TEST(HostileCommit, StrangersCommitDoesNotTakeAWorkerOutOfService) {
  integration::require_binaries({"moe-coordinator", "moe-worker"});
  ChaosClusterOptions o;
  o.name = "hostile-commit";
  ChaosCluster cluster(o);
  const ClusterStatus ready = cluster.wait_ready(20s);

  // Commit, then release, as the coordinator itself would.
  integration::RawConnection stranger(cluster.worker_address(0));
  std::string answered;
  for (const bool commit : {true, false}) {
    capnp::MallocMessageBuilder message;
    auto envelope = message.initRoot<wire::Envelope>();
    envelope.setRequestId(7);
    if (commit) envelope.initCommit().initPlacement().setEpoch(ready.epoch + 1000);
    else envelope.initRelease().setEpoch(ready.epoch + 1000);
    ASSERT_TRUE(stranger.write_message(message));
    const auto reply = stranger.read_reply(1000ms);
    answered += std::string(commit ? "commit: " : ", release: ") +
                (reply.kind == integration::RawConnection::Reply::Kind::Frame
                     ? (reply.frame.envelope().which() == wire::Envelope::ACK ? "an ack" : "an error")
                     : reply.detail);
  }

  CheckedLoadOptions lo;
  lo.coordinator = cluster.coordinator_address();
  lo.deadline = 2000ms;
  CheckedLoad load(lo);
  const auto limit = std::chrono::steady_clock::now() + 5s;
  std::string problem;
  do {
    problem = load.check_with_new_client(2000ms);
  } while (!problem.empty() && std::chrono::steady_clock::now() < limit);
  EXPECT_EQ(problem, "") << "5 s after a stranger's commit and release of epoch " << ready.epoch + 1000
                         << " to worker 0 (answered with " << answered << "), calls still fail\n"
                         << cluster.logs();
}

}  // namespace
}  // namespace moe::chaos
