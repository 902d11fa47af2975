// initial_placement: every expert placed on min(N, workers) distinct workers, balanced by count and
// bytes, within slots and memory, with a named shortfall when the cluster is too small.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "runtime/model/synthetic_model.h"
#include "runtime/placement/initial_placement.h"
#include "runtime/placement/placement_error.h"
#include "tests/unit/placement/placement_test_util.h"

namespace moe {
namespace {

ModelSpec spec_of(const std::string& preset) { return synthetic_model_spec(synthetic_preset(preset)); }

void expect_every_expert_on(const PlacementTable& table, const ExpertCatalog& catalog, size_t copies) {
  ASSERT_EQ(table.assignments.size(), catalog.experts.size());
  for (const auto& expert : catalog.experts) {
    auto it = table.assignments.find(expert.key);
    ASSERT_NE(it, table.assignments.end()) << "expert " << expert.key.layer << "/" << expert.key.expert << " not placed";
    std::set<uint32_t> distinct;
    float shares = 0;
    for (const auto& replica : it->second) {
      distinct.insert(replica.worker_id);
      shares += replica.share;
    }
    EXPECT_EQ(distinct.size(), copies);
    EXPECT_EQ(it->second.size(), copies);
    EXPECT_NEAR(shares, 1.f, 1e-6);
  }
}

TEST(InitialPlacement, CatalogCoversRoutedAndSharedExpertsOfMoeLayersOnly) {
  ModelSpec spec = spec_of("tiny-deepseek");  // layer 0 dense, shared expert
  ExpertCatalog catalog = expert_catalog(spec, 2);
  EXPECT_EQ(catalog.experts.size(), spec.moe_layers.size() * static_cast<size_t>(spec.experts_per_layer()));
  for (const auto& expert : catalog.experts) EXPECT_TRUE(spec.is_moe_layer(expert.key.layer));
  const ExpertKey shared{spec.moe_layers.front(), spec.shared_expert_id()};
  EXPECT_EQ(catalog.bytes_of(shared), 3ull * spec.hidden_size * spec.shared_intermediate_size * 2);
  EXPECT_EQ(catalog.bytes_of({spec.moe_layers.front(), 0}), 3ull * spec.hidden_size * spec.moe_intermediate_size * 2);
  EXPECT_THROW(catalog.bytes_of({0, 0}), PlacementError);
}

TEST(InitialPlacement, EveryExpertOnceBalancedByCountAcrossThreeWorkers) {
  ModelSpec spec = spec_of("tiny");  // 2 layers x 8 equal experts
  ExpertCatalog catalog = expert_catalog(spec, 4);
  PlacementTable table = initial_placement(catalog, test::workers(3), 1);
  EXPECT_EQ(table.epoch, 1u);
  expect_every_expert_on(table, catalog, 1);
  auto tally = test::tally(table, catalog);
  ASSERT_EQ(tally.size(), 3u);
  size_t lo = 100, hi = 0;
  for (auto& [id, t] : tally) {
    lo = std::min(lo, t.experts);
    hi = std::max(hi, t.experts);
  }
  EXPECT_LE(hi - lo, 1u);
  // Each layer is spread too: no worker holds more than ceil(8 / 3) experts of one layer.
  for (int32_t layer : spec.moe_layers) {
    for (uint32_t id = 1; id <= 3; ++id) {
      size_t count = 0;
      for (const auto& key : table.experts_on(id)) count += key.layer == layer;
      EXPECT_LE(count, 3u) << "worker " << id << " layer " << layer;
    }
  }
  for (const auto& worker : table.workers) EXPECT_EQ(worker.state, WorkerState::Active);
}

TEST(InitialPlacement, ReplicasOnDistinctWorkersCappedByWorkerCount) {
  ModelSpec spec = spec_of("tiny-qwen2");  // shared expert included
  ExpertCatalog catalog = expert_catalog(spec, 4);
  expect_every_expert_on(initial_placement(catalog, test::workers(4), 2), catalog, 2);
  expect_every_expert_on(initial_placement(catalog, test::workers(2), 3), catalog, 2);
}

TEST(InitialPlacement, BalancesBytesWhenSharedExpertsAreBigger) {
  ModelSpec spec = spec_of("tiny-deepseek");
  ExpertCatalog catalog = expert_catalog(spec, 4);
  uint64_t biggest = 0;
  for (const auto& e : catalog.experts) biggest = std::max(biggest, e.bytes);
  PlacementTable table = initial_placement(catalog, test::workers(3), 1);
  auto tally = test::tally(table, catalog);
  uint64_t lo = UINT64_MAX, hi = 0;
  for (auto& [id, t] : tally) {
    lo = std::min(lo, t.bytes);
    hi = std::max(hi, t.bytes);
  }
  EXPECT_LE(hi - lo, biggest);
}

TEST(InitialPlacement, RespectsSlotsAndMemoryPerWorker) {
  ModelSpec spec = spec_of("tiny");
  ExpertCatalog catalog = expert_catalog(spec, 4);
  const uint64_t one = catalog.experts.front().bytes;
  auto workers = test::workers(3);
  workers[0].slots = 2;              // worker 1: at most 2 experts
  workers[1].memory_bytes = 3 * one;  // worker 2: at most 3 experts' bytes
  PlacementTable table = initial_placement(catalog, workers, 1);
  expect_every_expert_on(table, catalog, 1);
  EXPECT_EQ(table.experts_on(1).size(), 2u);
  EXPECT_EQ(table.experts_on(2).size(), 3u);
  EXPECT_EQ(table.experts_on(3).size(), 11u);
}

TEST(InitialPlacement, NamesTheSlotShortfall) {
  ModelSpec spec = spec_of("tiny");
  try {
    initial_placement(spec, 4, test::workers(2, 0, 7), 2);
    FAIL() << "32 copies fit in 14 slots?";
  } catch (const PlacementError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("needs 32 expert slots"), std::string::npos) << what;
    EXPECT_NE(what.find("offer 14"), std::string::npos) << what;
    EXPECT_NE(what.find("short by 18"), std::string::npos) << what;
  }
}

TEST(InitialPlacement, NamesTheMemoryShortfallAndAnExpertThatFitsNowhere) {
  ModelSpec spec = spec_of("tiny");
  ExpertCatalog catalog = expert_catalog(spec, 4);
  const uint64_t one = catalog.experts.front().bytes;
  try {
    initial_placement(catalog, test::workers(2, 5 * one), 1);
    FAIL() << "16 experts fit in 10 experts' memory?";
  } catch (const PlacementError& e) {
    EXPECT_NE(std::string(e.what()).find("bytes of expert weights"), std::string::npos) << e.what();
  }
  // Totals suffice (2 x 8.5 experts) but no worker has room for the 17th half: packing fails, named.
  try {
    initial_placement(catalog, test::workers(2, 8 * one + one / 2), 1);
    SUCCEED();
  } catch (const PlacementError& e) {
    FAIL() << e.what();
  }
  auto uneven = test::workers(2, 0);
  uneven[0].memory_bytes = one / 2;  // worker 1 cannot hold even one expert
  uneven[1].memory_bytes = 100 * one;
  try {
    initial_placement(catalog, uneven, 2);
    FAIL() << "a second replica found room on a worker that cannot hold one expert";
  } catch (const PlacementError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("replica 2 of 2 of expert (layer 0, expert 0)"), std::string::npos) << what;
    EXPECT_NE(what.find("worker 1 (127.0.0.1:7501)"), std::string::npos) << what;
  }
}

TEST(InitialPlacement, DeterministicAndIndependentOfWorkerOrder) {
  ModelSpec spec = spec_of("tiny-qwen3");
  auto workers = test::workers(3);
  PlacementTable a = initial_placement(spec, 2, workers, 2);
  std::reverse(workers.begin(), workers.end());
  PlacementTable b = initial_placement(spec, 2, workers, 2);
  EXPECT_EQ(a, b);
}

TEST(InitialPlacement, RejectsNoWorkersAndZeroReplicas) {
  ModelSpec spec = spec_of("tiny");
  EXPECT_THROW(initial_placement(spec, 4, {}, 1), PlacementError);
  EXPECT_THROW(initial_placement(spec, 4, test::workers(2), 0), PlacementError);
}

}  // namespace
}  // namespace moe
