// The deterministic mode on real daemons (3 workers, every expert on 2 replicas, "tiny-qwen2": 12
// experts top-4 plus a gated shared expert): for three seeds, a probe token's solo output is taken on
// the first placement through an f32-wire and a bf16-wire client, then 200 random batches per seed and
// wire mix the probe with skewed other tokens while the placement changes under them (seed 1 crosses a
// `moectl rebalance`, seed 2 a `moectl drain` of one worker, seed 3 runs on what is left); every probe
// row must be its solo bits, and the f32 solo must be LocalEngine --deterministic's bits. The same run
// on a cluster without --deterministic prints the differences the mode removes (printed, not failed).
#include <gtest/gtest.h>

#include <stdlib.h>

#include <cmath>
#include <cstring>
#include <iostream>
#include <random>
#include <thread>

#include "runtime/client/cluster_client.h"
#include "tests/common/probe_batches.h"
#include "tests/integration/integration_util.h"

namespace moe::integration {
namespace {

constexpr const char* kPreset = "tiny-qwen2";

TestClusterOptions cluster_options(bool deterministic) {
  ::setenv("MOE_REBALANCE_THRESHOLD", "0", 1);  // inherited by the coordinator: only the test's rebalance
  TestClusterOptions o;
  o.model_flags = {"--synthetic", kPreset, "--seed", "0"};
  o.workers = 3;
  o.replicas = 2;
  if (deterministic) o.coordinator_flags = {"--deterministic"};
  return o;
}

std::unique_ptr<ClusterClient> client(const TestCluster& cluster, wire::DType dtype) {
  ClusterClientOptions o;
  o.wire_dtype = dtype;
  o.deadline = std::chrono::milliseconds(10000);
  return std::make_unique<ClusterClient>(cluster.coordinator_address(), o);
}

std::string moectl(TestCluster& cluster, std::vector<std::string> args, const std::string& log) {
  args.insert(args.begin(), bin_path("moectl"));
  return run_to_completion(args, cluster.dir() / log, 30s);
}

bool same_bits(const Matrix& a, const Matrix& b) {
  return a.data.size() == b.data.size() && std::memcmp(a.data.data(), b.data.data(), a.data.size() * sizeof(float)) == 0;
}

struct SeedResult {
  uint32_t seed = 0;
  test::ProbeRun f32, bf16;
  bool f32_solo_is_local_engine = false;
};

// The whole property run on `cluster`; placement events happen in it. `log` gets one line per seed.
std::vector<SeedResult> run_property(TestCluster& cluster, bool deterministic) {
  const ClientPlacement first = cluster.wait_ready();
  auto f32 = client(cluster, wire::DType::F32);
  auto bf16 = client(cluster, wire::DType::BF16);
  EXPECT_EQ(f32->model()->deterministic, deterministic) << "modelInfo.deterministic";
  EXPECT_EQ(moectl(cluster, {"status", "--cluster", cluster.coordinator_address()}, "moectl-status.log"), "exit 0");
  const std::string status = read_text(cluster.dir() / "moectl-status.log");
  EXPECT_EQ(status.find("mode deterministic") != std::string::npos, deterministic) << status;
  auto source = SyntheticLayerSource::from_preset(kPreset, 0);
  const ModelSpec& spec = source->spec();
  const int32_t layer = spec.moe_layers.back();
  LocalEngine reference(*source, make_cpu_backend(1), LocalEngineOptions{.layers = {layer}, .deterministic = true});

  // Other tokens: noise + 4 x the router row of an expert drawn by Zipf(1.5), so the load is skewed and
  // the rebalance has something to move.
  const RouterWeights router = source->router_weights(layer);
  std::vector<double> zipf(static_cast<size_t>(spec.num_experts));
  for (size_t r = 0; r < zipf.size(); ++r) zipf[r] = 1.0 / std::pow(static_cast<double>(r) + 1.0, 1.5);
  std::discrete_distribution<int32_t> hot(zipf.begin(), zipf.end());
  std::normal_distribution<float> normal(0.f, 1.f);
  auto other = [&](std::mt19937& rng) {
    Matrix t(1, spec.hidden_size);
    const int32_t e = hot(rng);
    for (int64_t h = 0; h < spec.hidden_size; ++h) t.data[h] = normal(rng) + 4.f * router.gate.row(e)[h];
    return t;
  };

  struct Probe {
    uint32_t seed;
    Matrix x, solo_f32, solo_bf16;
  };
  std::vector<Probe> probes;
  std::vector<SeedResult> results;
  for (uint32_t seed : {1u, 2u, 3u}) {
    Probe p{seed, random_input(1, spec.hidden_size, 1000 + seed), {}, {}};
    p.solo_f32 = f32->forward(layer, p.x);
    p.solo_bf16 = bf16->forward(layer, p.x);
    SeedResult r;
    r.seed = seed;
    r.f32_solo_is_local_engine = same_bits(p.solo_f32, reference.forward(layer, p.x));
    results.push_back(r);
    probes.push_back(std::move(p));
  }

  const uint32_t victim = TestCluster::worker_id(first, cluster.worker_address(2));
  auto rebalance = [&] {
    EXPECT_EQ(moectl(cluster, {"rebalance", "--cluster", cluster.coordinator_address()}, "moectl-rebalance.log"), "exit 0")
        << read_text(cluster.dir() / "moectl-rebalance.log");
    std::cout << "[ rebalance ] " << read_text(cluster.dir() / "moectl-rebalance.log");
  };
  auto drain = [&] {
    const uint64_t before = cluster.placement()->epoch();
    EXPECT_EQ(moectl(cluster, {"drain", "--cluster", cluster.coordinator_address(), std::to_string(victim)},
                     "moectl-drain.log"),
              "exit 0")
        << read_text(cluster.dir() / "moectl-drain.log");
    const auto deadline = std::chrono::steady_clock::now() + 15s;
    for (;;) {  // the drained worker exits once its experts moved: its copies are gone from the placement
      auto p = cluster.placement();
      bool gone = p && p->epoch() > before;
      if (gone)
        for (int32_t e = 0; e < spec.experts_per_layer(); ++e)
          for (const auto& replica : p->replicas(layer, e)) gone = gone && replica.worker_id != victim;
      if (gone) break;
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the drain did not move every expert\n" << cluster.logs();
      std::this_thread::sleep_for(50ms);
    }
    EXPECT_TRUE(cluster.worker(2).wait_exit(15s)) << "the drained worker did not exit";
    std::cout << "[ drain ] worker " << victim << " drained, placement epoch " << cluster.placement()->epoch() << "\n";
  };

  std::mt19937 rng(42);
  for (size_t i = 0; i < probes.size(); ++i) {
    const Probe& p = probes[i];
    auto event = [&, i](int b) {
      if (b != 100) return;
      if (i == 0) rebalance();
      if (i == 1) drain();
    };
    results[i].f32 = test::run_probe_batches([&](const Matrix& x) { return f32->forward(layer, x); }, p.x, p.solo_f32,
                                             rng, {}, other, event);
    results[i].bf16 = test::run_probe_batches([&](const Matrix& x) { return bf16->forward(layer, x); }, p.x,
                                              p.solo_bf16, rng, {}, other);
  }
  std::cout << "placement epoch " << first.epoch() << " at the start, " << cluster.placement()->epoch() << " at the end\n";
  return results;
}

class Determinism : public ClusterTest {};

TEST_F(Determinism, ProbeRowsAreTheirSoloBitsAcrossBatchesReplicasRebalanceAndDrain) {
  require_binaries({"moectl"});
  TestCluster& cluster = start_cluster(cluster_options(true));
  for (const SeedResult& r : run_property(cluster, true)) {
    EXPECT_TRUE(r.f32_solo_is_local_engine) << "seed " << r.seed << ": the f32-wire cluster's solo output is not "
                                            << "LocalEngine --deterministic's bits";
    EXPECT_EQ(r.f32.rows_differing, 0) << "seed " << r.seed << ", f32 wire: " << r.f32.summary();
    EXPECT_EQ(r.bf16.rows_differing, 0) << "seed " << r.seed << ", bf16 wire: " << r.bf16.summary();
    EXPECT_EQ(r.f32.batches, 200);
    EXPECT_EQ(r.bf16.batches, 200);
    std::cout << "[ deterministic ] seed " << r.seed << ": f32 wire: " << r.f32.summary() << "; bf16 wire: "
              << r.bf16.summary() << "\n";
  }
}

// The same run without --deterministic: the differences the mode removes, printed (never failed).
TEST_F(Determinism, DefaultModePrintsTheDifferencesTheModeRemoves) {
  require_binaries({"moectl"});
  TestCluster& cluster = start_cluster(cluster_options(false));
  for (const SeedResult& r : run_property(cluster, false)) {
    std::cout << "[ default mode ] seed " << r.seed << ": f32 solo " << (r.f32_solo_is_local_engine ? "is" : "is not")
              << " LocalEngine --deterministic's bits; f32 wire: " << r.f32.summary() << "; bf16 wire: "
              << r.bf16.summary() << "\n";
    EXPECT_EQ(r.f32.batches, 200);
  }
}

}  // namespace
}  // namespace moe::integration
