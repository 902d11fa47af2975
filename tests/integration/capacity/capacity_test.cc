// Capacity-true placement with real daemons on 127.0.0.1 (issue 10), synthetic "tiny" model (2 layers x 8
// experts = 16 expert copies at least), workers with declared --slots:
//   - a full cluster (3 workers x 8 slots, every slot used after a rebalance with --replica-budget 1.5)
//     loses a worker to kill -9: the survivors evict replicas, re-home every orphan, and forwards are
//     right again; no worker ever holds more copies than its slots;
//   - a cluster truly short (one survivor of 8 slots for 16 experts): the placement serves what fits, the
//     coordinator exports moe_coordinator_unavailable_experts and logs the experts, a forward fails within
//     its deadline naming an expert without a replica, moectl rebalance --dry-run and moectl drain answer
//     within seconds with "cannot act", and full service returns once workers with room join.
// The coordinator's periodic rebalancing is off (MOE_REBALANCE_THRESHOLD=0) so only the tested changes happen.
#include <gtest/gtest.h>

#include <stdlib.h>

#include <chrono>
#include <map>
#include <thread>

#include "runtime/client/cluster_client.h"
#include "runtime/client/coordinator_queries.h"
#include "runtime/client/local_cluster.h"
#include "tests/integration/integration_util.h"
#include "tests/integration/observability/http_get.h"

namespace moe::integration {
namespace {

constexpr double kTolerance = 1e-4;  // f32 on the wire
constexpr int kLayers = 2, kExperts = 8;

using Clock = std::chrono::steady_clock;

// Copies per worker id, and experts without a replica, of a placement.
struct Census {
  std::map<uint32_t, size_t> copies;
  size_t unplaced = 0;
};

Census census(const ClientPlacement& p) {
  Census out;
  for (int32_t layer = 0; layer < kLayers; ++layer) {
    for (int32_t e = 0; e < kExperts; ++e) {
      const auto& replicas = p.replicas(layer, e);
      if (replicas.empty()) ++out.unplaced;
      for (const auto& r : replicas) ++out.copies[r.worker_id];
    }
  }
  return out;
}

bool lists_address(const ClientPlacement& p, const std::string& address) {
  for (const auto& w : p.workers())
    if (w.address == address) return true;
  return false;
}

std::string moectl(TestCluster& cluster, std::vector<std::string> args, const std::string& log) {
  args.insert(args.begin(), bin_path("moectl"));
  return run_to_completion(args, cluster.dir() / log, 30s);
}

double metric(uint16_t port, const std::string& name) {
  const std::string body = http_get("127.0.0.1", port, "/metrics").body;
  const auto at = body.find("\n" + name + " ");
  if (at == std::string::npos) throw std::runtime_error(name + " missing from /metrics:\n" + body);
  return std::stod(body.substr(at + name.size() + 2));
}

// Polls /metrics until `name` reads `value` (bounded); returns the last reading.
double wait_metric(uint16_t port, const std::string& name, double value, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  double seen = metric(port, name);
  while (seen != value && Clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
    seen = metric(port, name);
  }
  return seen;
}

// Forwards of random batches (32 tokens: every expert of a layer is routed to) checked against LocalEngine.
class Forwards {
 public:
  Forwards(const std::string& coordinator, std::chrono::milliseconds deadline) : reference_(tiny_reference()) {
    ClusterClientOptions o;
    o.wire_dtype = wire::DType::F32;
    o.deadline = deadline;
    o.request_timeout = 1000ms;
    client_ = std::make_unique<ClusterClient>(coordinator, o);
  }
  // One call on `layer`; "" when right, else what went wrong.
  std::string call(int32_t layer, uint32_t seed) {
    const Matrix x = random_input(32, reference_->spec().hidden_size, seed);
    try {
      const Matrix got = client_->forward(layer, x);
      const double error = relative_error(got, reference_->forward(layer, x));
      return error < kTolerance ? "" : "WRONG OUTPUT: relative error " + std::to_string(error);
    } catch (const ClusterUnavailableError& e) {
      return std::string("ClusterUnavailableError: ") + e.what();
    } catch (const std::exception& e) {
      return e.what();
    }
  }
  // Calls until `count` in a row are right on both layers (bounded by `timeout`); the last failure if not.
  std::string until_right(int count, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    std::string last = "no call made";
    for (int streak = 0, n = 0; Clock::now() < deadline && n < 500; ++n) {
      const std::string problem = call(n % kLayers, 100 + n);
      if (problem.empty()) {
        if (++streak >= count) return "";
      } else {
        streak = 0;
        last = problem;
        std::this_thread::sleep_for(50ms);
      }
    }
    return last;
  }

 private:
  std::unique_ptr<LocalEngine> reference_;
  std::unique_ptr<ClusterClient> client_;
};

class Capacity : public ClusterTest {
 protected:
  void SetUp() override {
    ClusterTest::SetUp();
    require_binaries({"moectl"});
    ::setenv("MOE_REBALANCE_THRESHOLD", "0", 1);  // inherited by the coordinator
    ::setenv("MOE_SLOTS", "8", 1);                // inherited by the workers started from here on
  }
  void TearDown() override {
    ::unsetenv("MOE_SLOTS");
    ClusterTest::TearDown();
  }

  TestCluster& start(uint16_t metrics_port) {
    TestClusterOptions o;
    o.model_flags = tiny_model_flags();
    o.workers = 3;
    o.coordinator_flags = {"--replica-budget", "1.5", "--metrics-port",  // --min-workers 3 from the harness
                           std::to_string(metrics_port)};
    return start_cluster(o);
  }

  // The next placement (after `after`) that no longer lists the killed workers' addresses.
  ClientPlacement without_workers(TestCluster& cluster, uint64_t after, const std::vector<size_t>& killed) {
    return cluster.wait_for_placement(
        "a placement without the killed worker(s)",
        [&](const ClientPlacement& p) {
          if (p.epoch() <= after) return false;
          for (size_t i : killed)
            if (lists_address(p, cluster.worker_address(i))) return false;
          return true;
        },
        20s);
  }
};

TEST_F(Capacity, LostWorkerOnAFullClusterIsReHomedByEvictingReplicasAndForwardsSucceed) {
  const uint16_t metrics_port = pick_free_port();
  TestCluster& cluster = start(metrics_port);
  const ClientPlacement first = cluster.wait_ready();
  for (const auto& [id, n] : census(first).copies) EXPECT_LE(n, 8u) << "worker " << id << " over its 8 slots";

  // Fill every slot: the budget gives ceil(8 x 1.5 / 3) = 4 copies per worker per layer, 8 in all.
  ASSERT_EQ(moectl(cluster, {"rebalance", "--cluster", cluster.coordinator_address()}, "moectl-rebalance.log"), "exit 0")
      << read_text(cluster.dir() / "moectl-rebalance.log");
  const ClientPlacement full = cluster.wait_for_placement(
      "every worker at 8 of 8 slots",
      [&](const ClientPlacement& p) {
        const Census c = census(p);
        if (c.copies.size() != 3) return false;
        for (const auto& [id, n] : c.copies)
          if (n != 8) return false;
        return true;
      },
      15s);
  Forwards forwards(cluster.coordinator_address(), 5000ms);
  ASSERT_EQ(forwards.until_right(4, 20s), "");

  cluster.kill_worker(1);
  const ClientPlacement after = without_workers(cluster, full.epoch(), {1});
  const Census c = census(after);
  EXPECT_EQ(c.unplaced, 0u) << "the survivors had 16 slots for 16 experts";
  for (const auto& [id, n] : c.copies) EXPECT_LE(n, 8u) << "worker " << id << " over its 8 slots";
  EXPECT_EQ(forwards.until_right(6, 20s), "");
  EXPECT_EQ(wait_metric(metrics_port, "moe_coordinator_unavailable_experts", 0.0, 5s), 0.0);
  // The control requests answer again (here a dry run: nothing is short).
  EXPECT_EQ(moectl(cluster, {"rebalance", "--dry-run", "--timeout-ms", "20000", "--cluster", cluster.coordinator_address()},
                   "moectl-dry-run.log"),
            "exit 0")
      << read_text(cluster.dir() / "moectl-dry-run.log");
}

TEST_F(Capacity, TrulyShortCapacityIsNamedControlRequestsAnswerAndFullServiceReturns) {
  const uint16_t metrics_port = pick_free_port();
  TestCluster& cluster = start(metrics_port);
  const ClientPlacement first = cluster.wait_ready();

  // One survivor with 8 slots for 16 experts.
  cluster.kill_worker(0);
  cluster.kill_worker(1);
  const ClientPlacement shortened = without_workers(cluster, first.epoch(), {0, 1});
  EXPECT_EQ(census(shortened).unplaced, 8u);
  for (const auto& [id, n] : census(shortened).copies) EXPECT_LE(n, 8u);
  EXPECT_EQ(wait_metric(metrics_port, "moe_coordinator_unavailable_experts", 8.0, 5s), 8.0);
  const std::string log = read_text(cluster.dir() / "moe-coordinator.log");
  EXPECT_NE(log.find("capacity short for epoch " + std::to_string(shortened.epoch()) + ": 8 experts unavailable: (layer"),
            std::string::npos)
      << log;

  // Forwards that need an unavailable expert fail within their deadline, naming one.
  Forwards forwards(cluster.coordinator_address(), 1500ms);
  std::string problems;
  for (int32_t layer = 0; layer < kLayers; ++layer) {
    const auto call_start = Clock::now();
    problems += forwards.call(layer, 7 + layer) + "\n";
    EXPECT_LT(Clock::now() - call_start, 4s);
  }
  EXPECT_NE(problems.find("ClusterUnavailableError: forward of layer 0 (32 tokens): experts (0, "), std::string::npos)
      << problems;
  EXPECT_NE(problems.find("are unavailable: no replica in placement epoch"), std::string::npos) << problems;

  // moectl rebalance --dry-run answers within seconds: it cannot act.
  auto start = Clock::now();
  EXPECT_NE(moectl(cluster, {"rebalance", "--dry-run", "--timeout-ms", "20000", "--cluster", cluster.coordinator_address()},
                   "moectl-dry-run.log"),
            "exit 0");
  EXPECT_LT(Clock::now() - start, 8s);
  EXPECT_NE(read_text(cluster.dir() / "moectl-dry-run.log").find("cannot act"), std::string::npos)
      << read_text(cluster.dir() / "moectl-dry-run.log");

  // A worker with 4 slots joins: 12 slots for 16 experts, still short; it takes 4 orphans at once.
  ::setenv("MOE_SLOTS", "4", 1);
  const size_t small = cluster.start_worker();
  const ClientPlacement partial = cluster.wait_for_placement(
      "the 4-slot worker hosting 4 orphans", [&](const ClientPlacement& p) { return census(p).unplaced == 4; }, 15s);
  const uint32_t small_id = TestCluster::worker_id(partial, cluster.worker_address(small));
  EXPECT_EQ(census(partial).copies[small_id], 4u);

  // Draining it cannot act (the other worker cannot hold every expert): an error within seconds.
  start = Clock::now();
  EXPECT_NE(moectl(cluster, {"drain", "--timeout-ms", "20000", "--cluster", cluster.coordinator_address(),
                             std::to_string(small_id)},
                   "moectl-drain.log"),
            "exit 0");
  EXPECT_LT(Clock::now() - start, 8s);
  EXPECT_NE(read_text(cluster.dir() / "moectl-drain.log").find("cannot act"), std::string::npos)
      << read_text(cluster.dir() / "moectl-drain.log");
  const auto status = cluster.status();
  ASSERT_TRUE(status.has_value());

  // A worker with room joins: every expert is served again, checked against LocalEngine.
  ::setenv("MOE_SLOTS", "8", 1);
  cluster.start_worker();
  const ClientPlacement whole = cluster.wait_for_placement(
      "every expert placed again", [&](const ClientPlacement& p) { return census(p).unplaced == 0; }, 15s);
  for (const auto& [id, n] : census(whole).copies) EXPECT_LE(n, id == small_id ? 4u : 8u) << "worker " << id;
  Forwards again(cluster.coordinator_address(), 5000ms);
  EXPECT_EQ(again.until_right(6, 20s), "");
  EXPECT_EQ(wait_metric(metrics_port, "moe_coordinator_unavailable_experts", 0.0, 5s), 0.0);
}

}  // namespace
}  // namespace moe::integration
