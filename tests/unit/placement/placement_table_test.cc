// PlacementTable: lookups, and round trips through the capnp Placement struct and JSON, with the
// invariant checks that reject broken tables.
#include <gtest/gtest.h>

#include <capnp/message.h>

#include "runtime/model/synthetic_model.h"
#include "runtime/placement/initial_placement.h"
#include "runtime/placement/placement_error.h"
#include "runtime/placement/placement_json.h"
#include "runtime/placement/placement_wire.h"
#include "tests/unit/placement/placement_test_util.h"

namespace moe {
namespace {

PlacementTable sample_table() {
  ModelSpec spec = synthetic_model_spec(synthetic_preset("tiny-qwen2"));
  PlacementTable table = initial_placement(spec, 4, test::workers(3), 2);
  table.epoch = 7;
  table.workers.push_back({9, "127.0.0.1:7609", WorkerState::Joining});
  return table;
}

TEST(PlacementTable, LookupsAgreeWithAssignments) {
  PlacementTable table;
  table.workers = {{1, "a:1", WorkerState::Active}, {2, "b:2", WorkerState::Active}};
  table.assignments[{0, 0}] = {{1, 0.5f}, {2, 0.5f}};
  table.assignments[{0, 1}] = {{2, 1.f}};
  EXPECT_EQ(table.experts_on(1), (std::vector<ExpertKey>{{0, 0}}));
  EXPECT_EQ(table.experts_on(2), (std::vector<ExpertKey>{{0, 0}, {0, 1}}));
  EXPECT_TRUE(table.hosts(2, {0, 1}));
  EXPECT_FALSE(table.hosts(1, {0, 1}));
  PlacementTable next = table;
  next.assignments[{0, 1}] = {{1, 0.5f}, {2, 0.5f}};
  EXPECT_EQ(table.gained_by(1, next), (std::vector<ExpertKey>{{0, 1}}));
  EXPECT_TRUE(table.gained_by(2, next).empty());
  ASSERT_NE(table.find_worker(2), nullptr);
  EXPECT_EQ(table.find_worker(2)->address, "b:2");
  EXPECT_EQ(table.find_worker(3), nullptr);
}

TEST(PlacementTable, WireRoundTripKeepsEverything) {
  PlacementTable table = sample_table();
  capnp::MallocMessageBuilder message;
  placement_to_wire(table, message.initRoot<wire::Placement>());
  PlacementTable back = placement_from_wire(message.getRoot<wire::Placement>().asReader());
  EXPECT_EQ(back, table);
}

TEST(PlacementTable, JsonRoundTripKeepsEverything) {
  PlacementTable table = sample_table();
  nlohmann::json json = placement_to_json(table);
  EXPECT_EQ(json["epoch"], 7);
  PlacementTable back = placement_from_json(nlohmann::json::parse(json.dump()));
  EXPECT_EQ(back, table);
}

// The rebalancer keeps spare copies with share 0; the coordinator saves them in its state file and must
// read that file back (chaos process seed 1: "has share 0.000000, expected (0, 1]" stopped a restart).
TEST(PlacementTable, PerLayerWeightVersionsRoundTripAndAnswerVersionOf) {
  PlacementTable table = sample_table();
  table.weight_version = 3;
  table.layer_versions = {{0, 4}};  // a layer-by-layer update to version 4, layer 0 done
  EXPECT_EQ(table.version_of(0), 4u);
  EXPECT_EQ(table.version_of(1), 3u);
  capnp::MallocMessageBuilder message;
  placement_to_wire(table, message.initRoot<wire::Placement>());
  EXPECT_EQ(placement_from_wire(message.getRoot<wire::Placement>().asReader()), table);
  EXPECT_EQ(placement_from_json(nlohmann::json::parse(placement_to_json(table).dump())), table);
  // A uniform table writes no layer_versions key (state files of older coordinators read the same).
  table.layer_versions.clear();
  EXPECT_FALSE(placement_to_json(table).contains("layer_versions"));
  // Version 0 of a layer is refused by both readers.
  nlohmann::json json = placement_to_json(table);
  json["layer_versions"] = nlohmann::json::array({{{"layer", 1}, {"version", 0}}});
  EXPECT_THROW(placement_from_json(json), PlacementError);
  auto wire_table = message.initRoot<wire::Placement>();
  placement_to_wire(table, wire_table);
  auto list = wire_table.initLayerVersions(1);
  list[0].setLayer(1);
  list[0].setVersion(0);
  EXPECT_THROW(placement_from_wire(wire_table.asReader()), PlacementError);
}

TEST(PlacementTable, ZeroShareSpareCopiesRoundTripButNotAllZero) {
  PlacementTable table;
  table.epoch = 3;
  table.workers = {{1, "a:1", WorkerState::Active}, {2, "b:2", WorkerState::Active}};
  table.assignments[{0, 1}] = {{1, 1.f}, {2, 0.f}};
  EXPECT_EQ(placement_from_json(nlohmann::json::parse(placement_to_json(table).dump())), table);
  capnp::MallocMessageBuilder message;
  placement_to_wire(table, message.initRoot<wire::Placement>());
  EXPECT_EQ(placement_from_wire(message.getRoot<wire::Placement>().asReader()), table);
  table.assignments[{0, 1}] = {{1, 0.f}, {2, 0.f}};
  EXPECT_THROW(placement_from_json(placement_to_json(table)), PlacementError);
}

TEST(PlacementTable, ReadersRejectReplicaOnUnknownWorker) {
  PlacementTable table;
  table.epoch = 2;
  table.workers = {{1, "a:1", WorkerState::Active}};
  table.assignments[{0, 3}] = {{5, 1.f}};
  capnp::MallocMessageBuilder message;
  placement_to_wire(table, message.initRoot<wire::Placement>());
  try {
    placement_from_wire(message.getRoot<wire::Placement>().asReader());
    FAIL() << "a replica on an unknown worker was accepted";
  } catch (const PlacementError& e) {
    EXPECT_NE(std::string(e.what()).find("worker 5"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("(layer 0, expert 3)"), std::string::npos) << e.what();
  }
  EXPECT_THROW(placement_from_json(placement_to_json(table)), PlacementError);
}

TEST(PlacementTable, JsonReaderNamesMissingKeyAndBadState) {
  nlohmann::json json = placement_to_json(sample_table());
  json.erase("assignments");
  try {
    placement_from_json(json);
    FAIL() << "missing assignments accepted";
  } catch (const PlacementError& e) {
    EXPECT_NE(std::string(e.what()).find("assignments"), std::string::npos) << e.what();
  }
  json = placement_to_json(sample_table());
  json["workers"][0]["state"] = "sleepy";
  EXPECT_THROW(placement_from_json(json), PlacementError);
}

}  // namespace
}  // namespace moe
