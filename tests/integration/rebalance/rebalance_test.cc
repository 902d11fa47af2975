// Live rebalancing and elasticity of real daemons on 127.0.0.1 (synthetic "tiny" model: 8 experts top-2
// on layers 0 and 1) under continuous skewed load from several ClusterClient threads, every output
// checked against LocalEngine: `moectl rebalance` (the measured imbalance of the status reply drops),
// a worker joining while the cluster serves (it hosts experts in the next epoch) and `moectl drain`
// (its experts move away, the process exits 0). Each must finish with zero failed calls and zero wrong
// outputs. The coordinator's own periodic rebalancing is off (MOE_REBALANCE_THRESHOLD=0) so only the
// tested change happens.
#include <gtest/gtest.h>

#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>
#include <numeric>
#include <thread>

#include "runtime/client/cluster_client.h"
#include "runtime/client/coordinator_queries.h"
#include "tests/integration/integration_util.h"

namespace moe::integration {
namespace {

constexpr double kTolerance = 1e-4;  // f32 on the wire

// Tokens biased toward a few hot experts: noise + 4 * the router row of an expert drawn by Zipf(1.5) over
// a fixed ranking; outputs from LocalEngine.
std::vector<Job> skewed_jobs(size_t count) {
  auto source = SyntheticLayerSource::from_preset("tiny", 0);
  auto reference = tiny_reference();
  const ModelSpec& spec = source->spec();
  std::mt19937_64 rng(7);
  std::vector<double> weights(spec.num_experts);
  for (int32_t r = 0; r < spec.num_experts; ++r) weights[r] = 1.0 / std::pow(r + 1.0, 1.5);
  std::discrete_distribution<int32_t> draw(weights.begin(), weights.end());
  std::normal_distribution<float> noise(0.f, 1.f);
  std::vector<Job> jobs;
  for (size_t i = 0; i < count; ++i) {
    Job job;
    job.layer = spec.moe_layers[i % spec.moe_layers.size()];
    const Matrix gate = source->router_weights(job.layer).gate;
    job.x = Matrix(16 + static_cast<int64_t>(i % 17), spec.hidden_size);
    for (int64_t t = 0; t < job.x.rows; ++t) {
      const float* hot = gate.row((draw(rng) * 3 + 1) % spec.num_experts);
      for (int64_t c = 0; c < job.x.cols; ++c) job.x.row(t)[c] = noise(rng) + 4.f * hot[c];
    }
    job.want = reference->forward(job.layer, job.x);
    jobs.push_back(std::move(job));
  }
  return jobs;
}

// Several threads calling forward on one ClusterClient until stopped; every call must be right.
class LoadStream {
 public:
  LoadStream(const std::string& coordinator, int threads) : jobs_(skewed_jobs(24)) {
    ClusterClientOptions o;
    o.wire_dtype = wire::DType::F32;
    o.deadline = 5s;
    o.request_timeout = 1000ms;
    client_ = std::make_unique<ClusterClient>(coordinator, o);
    for (int t = 0; t < threads; ++t) {
      threads_.emplace_back([this, t] {
        for (size_t n = 0; !stop_.load(); ++n) call(t, jobs_[(t * 7 + n) % jobs_.size()]);
      });
    }
  }
  ~LoadStream() { stop(); }

  void stop() {
    stop_ = true;
    for (auto& thread : threads_) thread.join();
    threads_.clear();
  }
  int good() const { return good_.load(); }
  int calls() const { return calls_.load(); }
  std::vector<std::string> failures() {
    std::lock_guard lock(mutex_);
    return failures_;
  }
  // Waits until `more` further right answers came back (bounded).
  bool wait_for_calls(int more, std::chrono::milliseconds timeout) {
    const int target = good_.load() + more;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (good_.load() < target && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
    return good_.load() >= target;
  }

 private:
  void call(int thread, const Job& job) {
    std::string problem;
    try {
      Matrix got = client_->forward(job.layer, job.x);
      if (got.rows != job.want.rows || got.cols != job.want.cols) {
        problem = "wrong shape";
      } else if (const double error = relative_error(got, job.want); !(error < kTolerance)) {
        problem = "WRONG OUTPUT: relative error " + std::to_string(error);
      }
    } catch (const std::exception& e) {
      problem = std::string("failed call: ") + e.what();
    }
    ++calls_;
    if (problem.empty()) {
      ++good_;
      return;
    }
    std::lock_guard lock(mutex_);
    failures_.push_back("thread " + std::to_string(thread) + ", layer " + std::to_string(job.layer) + ": " + problem);
  }

  std::vector<Job> jobs_;
  std::unique_ptr<ClusterClient> client_;
  std::atomic<bool> stop_{false};
  std::atomic<int> calls_{0}, good_{0};
  std::mutex mutex_;
  std::vector<std::string> failures_;
  std::vector<std::thread> threads_;
};

TestClusterOptions tiny_cluster(int workers) {
  ::setenv("MOE_REBALANCE_THRESHOLD", "0", 1);  // inherited by the coordinator: no automatic rebalance
  TestClusterOptions o;
  o.model_flags = tiny_model_flags();
  o.workers = workers;
  return o;
}

// The worst layer's measured imbalance in the status reply, averaged over `samples` heartbeat windows.
double measured_imbalance(const TestCluster& cluster, int samples) {
  double sum = 0;
  int seen = 0;
  for (int i = 0; i < samples; ++i) {
    Frame reply = query_status(cluster.coordinator_address(), 2000ms);
    double worst = 0;
    for (auto b : reply.envelope().getStatusReply().getBalance()) worst = std::max(worst, double(b.getImbalance()));
    if (worst > 0) {
      sum += worst;
      ++seen;
    }
    std::this_thread::sleep_for(150ms);
  }
  return seen ? sum / seen : 0.0;
}

const ModelSpec& load_spec() {
  static const auto source = SyntheticLayerSource::from_preset("tiny", 0);
  return source->spec();
}

size_t experts_on(const ClientPlacement& placement, uint32_t worker, const ModelSpec& spec) {
  size_t count = 0;
  for (int32_t layer : spec.moe_layers)
    for (int32_t e = 0; e < spec.experts_per_layer(); ++e)
      for (const auto& r : placement.replicas(layer, e)) count += r.worker_id == worker;
  return count;
}

// Polls getPlacement (without the harness's check that every started daemon still runs).
ClientPlacement poll_placement(TestCluster& cluster, const std::function<bool(const ClientPlacement&)>& ready,
                               std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (auto p = cluster.placement(); p && ready(*p)) return *p;
    if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error("placement did not change\n" + cluster.logs());
    std::this_thread::sleep_for(50ms);
  }
}

std::string moectl(TestCluster& cluster, std::vector<std::string> args, const std::string& log) {
  args.insert(args.begin(), bin_path("moectl"));
  return run_to_completion(args, cluster.dir() / log, 30s);
}

class Rebalance : public ClusterTest {
 protected:
  void SetUp() override {
    ClusterTest::SetUp();
    require_binaries({"moectl"});
  }
};

TEST_F(Rebalance, MoectlRebalanceUnderSkewedLoadLowersTheMeasuredImbalance) {
  TestCluster& cluster = start_cluster(tiny_cluster(3));
  const ClientPlacement before = cluster.wait_ready();
  LoadStream load(cluster.coordinator_address(), 3);
  ASSERT_TRUE(load.wait_for_calls(60, 15s)) << "the stream did not get going";
  std::this_thread::sleep_for(1s);  // load estimates settle
  const double imbalance_before = measured_imbalance(cluster, 8);

  EXPECT_EQ(moectl(cluster, {"rebalance", "--cluster", cluster.coordinator_address()}, "moectl-rebalance.log"), "exit 0")
      << read_text(cluster.dir() / "moectl-rebalance.log");
  const ClientPlacement after = cluster.wait_for_placement(
      "a rebalanced epoch", [&](const ClientPlacement& p) { return p.epoch() > before.epoch(); }, 10s);
  std::this_thread::sleep_for(1s);  // past the grace period and a few heartbeat windows
  ASSERT_TRUE(load.wait_for_calls(60, 15s));
  const double imbalance_after = measured_imbalance(cluster, 8);
  load.stop();

  std::cout << "measured imbalance " << imbalance_before << " -> " << imbalance_after << " ("
            << read_text(cluster.dir() / "moectl-rebalance.log") << ")\n";
  EXPECT_GT(imbalance_before, 1.2) << "the load should be skewed before the rebalance";
  EXPECT_LT(imbalance_after, imbalance_before - 0.1);
  EXPECT_TRUE(load.failures().empty()) << load.failures().size() << " failed calls of " << load.calls()
                                       << ", first: " << load.failures().front();
}

TEST_F(Rebalance, AWorkerJoiningWhileServingHostsExpertsInTheNextEpoch) {
  TestCluster& cluster = start_cluster(tiny_cluster(2));
  const ClientPlacement before = cluster.wait_ready();
  LoadStream load(cluster.coordinator_address(), 3);
  ASSERT_TRUE(load.wait_for_calls(40, 15s)) << "the stream did not get going";

  const size_t joined = cluster.start_worker();
  const std::string address = cluster.worker_address(joined);
  const ClientPlacement after = cluster.wait_for_placement(
      "the new worker hosting experts",
      [&](const ClientPlacement& p) {
        for (const auto& worker : p.workers())
          if (worker.address == address) return experts_on(p, worker.id, load_spec()) > 0;
        return false;
      },
      15s);
  EXPECT_GT(after.epoch(), before.epoch());
  std::this_thread::sleep_for(1s);  // past the grace period: the others released what they lost
  ASSERT_TRUE(load.wait_for_calls(60, 15s));
  load.stop();
  EXPECT_TRUE(load.failures().empty()) << load.failures().size() << " failed calls of " << load.calls()
                                       << ", first: " << load.failures().front();
}

TEST_F(Rebalance, DrainMovesEveryExpertAwayAndTheWorkerExitsCleanly) {
  TestCluster& cluster = start_cluster(tiny_cluster(3));
  const ClientPlacement before = cluster.wait_ready();
  const uint32_t victim = TestCluster::worker_id(before, cluster.worker_address(2));
  LoadStream load(cluster.coordinator_address(), 3);
  ASSERT_TRUE(load.wait_for_calls(40, 15s)) << "the stream did not get going";
  ASSERT_GT(experts_on(before, victim, load_spec()), 0u);

  EXPECT_EQ(moectl(cluster, {"drain", "--cluster", cluster.coordinator_address(), std::to_string(victim)},
                   "moectl-drain.log"),
            "exit 0")
      << read_text(cluster.dir() / "moectl-drain.log");
  const ClientPlacement after = poll_placement(
      cluster, [&](const ClientPlacement& p) { return p.epoch() > before.epoch(); }, 10s);
  EXPECT_EQ(experts_on(after, victim, load_spec()), 0u) << "the drained worker still hosts experts";
  EXPECT_TRUE(cluster.worker(2).wait_exit(10s)) << "the drained worker did not exit\n" << cluster.logs();
  EXPECT_EQ(cluster.worker(2).exit_status(), "exit 0");
  ASSERT_TRUE(load.wait_for_calls(60, 15s));
  load.stop();
  EXPECT_TRUE(load.failures().empty()) << load.failures().size() << " failed calls of " << load.calls()
                                       << ", first: " << load.failures().front();
}

}  // namespace
}  // namespace moe::integration
