// adopt_reported: a starting coordinator keeps what workers report they hold (within their declared
// capacity), places what nobody holds, and names what cannot be placed.
#include <gtest/gtest.h>

#include "runtime/model/synthetic_model.h"
#include "runtime/placement/adopt_reported.h"
#include "runtime/placement/initial_placement.h"
#include "runtime/placement/placement_check.h"
#include "runtime/placement/placement_error.h"
#include "tests/unit/placement/placement_test_util.h"

namespace moe {
namespace {

ExpertCatalog tiny_catalog() { return expert_catalog(synthetic_model_spec(synthetic_preset("tiny")), 4); }

// What each worker of `table` holds, as a worker would report it.
std::map<uint32_t, std::set<ExpertKey>> reports_of(const PlacementTable& table) {
  std::map<uint32_t, std::set<ExpertKey>> out;
  for (const auto& [key, replicas] : table.assignments)
    for (const auto& r : replicas) out[r.worker_id].insert(key);
  return out;
}

TEST(AdoptReported, KeepsExactlyWhatTheWorkersHoldAndNumbersTheEpochAsTold) {
  const ExpertCatalog catalog = tiny_catalog();
  const auto workers = test::workers(3);
  const PlacementTable served = initial_placement(catalog, workers, 2);
  const auto reports = reports_of(served);
  ASSERT_TRUE(reports_cover(catalog, reports));
  const AdoptedPlacement adopted = adopt_reported(catalog, workers, reports, 2, 17);
  EXPECT_EQ(adopted.table.epoch, 17u);
  EXPECT_EQ(adopted.table.assignments, served.assignments);
  EXPECT_EQ(adopted.kept, 2 * catalog.experts.size());
  EXPECT_EQ(adopted.added, 0u);
  EXPECT_EQ(adopted.dropped, 0u);
  for (const auto& w : adopted.table.workers) EXPECT_EQ(w.state, WorkerState::Active) << w.id;
}

TEST(AdoptReported, PlacesWhatALostWorkerHeldOnTheOthers) {
  const ExpertCatalog catalog = tiny_catalog();
  const PlacementTable served = initial_placement(catalog, test::workers(3), 1);
  auto reports = reports_of(served);
  const size_t lost = reports[3].size();
  reports.erase(3);  // worker 3 did not come back
  const auto survivors = test::workers(2);
  EXPECT_FALSE(reports_cover(catalog, reports));
  const AdoptedPlacement adopted = adopt_reported(catalog, survivors, reports, 1, 5);
  EXPECT_EQ(adopted.added, lost);
  for (const auto& expert : catalog.experts) {
    const auto& replicas = adopted.table.assignments.at(expert.key);
    ASSERT_EQ(replicas.size(), 1u) << expert_name(expert.key);
    EXPECT_NE(replicas[0].worker_id, 3u);
  }
  EXPECT_EQ(adopted.table.workers.size(), 2u);
}

TEST(AdoptReported, NeverKeepsMoreCopiesThanAWorkerDeclaresSlotsFor) {
  const ExpertCatalog catalog = tiny_catalog();  // 16 experts
  // Worker 1 reports every expert (it held them under an older, larger --slots); it now offers 6 slots.
  std::map<uint32_t, std::set<ExpertKey>> reports;
  for (const auto& e : catalog.experts) reports[1].insert(e.key);
  const auto workers = test::workers(3, 0, 6);
  const AdoptedPlacement adopted = adopt_reported(catalog, workers, reports, 1, 3);
  const auto per_worker = test::tally(adopted.table, catalog);
  for (const auto& [id, t] : per_worker) EXPECT_LE(t.experts, 6u) << "worker " << id;
  EXPECT_EQ(adopted.kept, 6u);
  EXPECT_EQ(adopted.dropped, catalog.experts.size() - 6);
  for (const auto& e : catalog.experts) EXPECT_FALSE(adopted.table.assignments.at(e.key).empty());
}

TEST(AdoptReported, IgnoresExpertsOfAnotherModelAndNamesWhatCannotBePlaced) {
  const ExpertCatalog catalog = tiny_catalog();
  std::map<uint32_t, std::set<ExpertKey>> reports;
  reports[1].insert({99, 0});  // not an expert of this model
  try {
    adopt_reported(catalog, test::workers(1, 0, 4), reports, 1, 2);
    FAIL() << "16 experts cannot fit 4 slots";
  } catch (const PlacementError& e) {
    EXPECT_NE(std::string(e.what()).find("no live worker has room for"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("in all)"), std::string::npos) << e.what();
  }
  EXPECT_THROW(adopt_reported(catalog, {}, reports, 1, 2), PlacementError);
}

}  // namespace
}  // namespace moe
