// ClientPlacement: decoding, share-proportional and deterministic replica choice, avoiding failed or
// dead replicas while another is left.
#include <gtest/gtest.h>

#include <capnp/message.h>

#include "runtime/client/client_placement.h"
#include "runtime/client/cluster_model.h"
#include "runtime/model/model_error.h"
#include "runtime/placement/placement_error.h"
#include "runtime/placement/placement_wire.h"
#include "runtime/placement/replica_chooser.h"
#include "runtime/wire/wire_error.h"
#include "tests/unit/client/cluster_test_peer.h"

namespace moe::test {
namespace {

ClientPlacement make(const PeerPlacement& p) {
  capnp::MallocMessageBuilder message;
  auto root = message.initRoot<wire::Placement>();
  fill_placement(root, p);
  return ClientPlacement(root.asReader());
}

PeerPlacement two_replicas(float share0, float share1) {
  PeerPlacement p;
  p.epoch = 3;
  p.workers = {{0, "127.0.0.1:1"}, {1, "127.0.0.1:2"}, {2, "127.0.0.1:3"}};
  p.replicas[{0, 0}] = {{0, share0}, {1, share1}};
  p.replicas[{0, 1}] = {{2, 1.f}};
  return p;
}

TEST(ClientPlacement, DecodesEpochWorkersAndReplicas) {
  ClientPlacement placement = make(two_replicas(0.5f, 0.5f));
  EXPECT_EQ(placement.epoch(), 3u);
  EXPECT_EQ(placement.workers().size(), 3u);
  EXPECT_EQ(placement.worker(1).address, "127.0.0.1:2");
  EXPECT_EQ(placement.replicas(0, 0).size(), 2u);
  EXPECT_TRUE(placement.replicas(0, 5).empty());
  EXPECT_EQ(placement.choose_worker(0, 5, 0), -1);
  EXPECT_EQ(placement.choose_worker(0, 1, 7), 2);
  EXPECT_THROW(placement.worker(9), PlacementError);
}

TEST(ClientPlacement, RejectsReplicaOnUnlistedWorker) {
  PeerPlacement p = two_replicas(0.5f, 0.5f);
  p.replicas[{1, 0}] = {{7, 1.f}};
  EXPECT_THROW(make(p), PlacementError);
}

TEST(ClientPlacement, RefusesAWorkerAddressOverTheCap) {
  PeerPlacement p = two_replicas(0.5f, 0.5f);
  p.workers[1] = "127.0.0.1:2" + std::string(300, '0');
  try {
    make(p);
    FAIL() << "a 311-byte worker address was accepted";
  } catch (const WireError& e) {
    EXPECT_NE(std::string(e.what()).find("worker 1's address is 311 bytes, at most 256"), std::string::npos) << e.what();
  }
  capnp::MallocMessageBuilder message;  // the same through the placement table's decoder
  auto root = message.initRoot<wire::Placement>();
  fill_placement(root, p);
  EXPECT_THROW(placement_from_wire(root.asReader()), WireError);
}

TEST(ClientPlacement, DecodeModelInfoRefusesAnOverlongSource) {
  capnp::MallocMessageBuilder message;
  auto info = message.initRoot<wire::ModelInfo>();
  info.setSpecJson("{}");
  info.setSource(std::string(5000, 's'));
  try {
    decode_model_info(info.asReader());
    FAIL() << "a 5000-byte modelInfo.source was accepted";
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("modelInfo.source is 5000 bytes, at most 4096"), std::string::npos) << e.what();
  }
}

TEST(ClientPlacement, SpreadsTokensInProportionToShares) {
  ClientPlacement placement = make(two_replicas(0.75f, 0.25f));
  int on_first = 0;
  const int tokens = 20000;
  for (int t = 0; t < tokens; ++t) {
    const int64_t w = placement.choose_worker(0, 0, t);
    ASSERT_TRUE(w == 0 || w == 1);
    on_first += w == 0;
    EXPECT_EQ(w, placement.choose_worker(0, 0, t)) << "choice must be deterministic for token " << t;
  }
  EXPECT_NEAR(double(on_first) / tokens, 0.75, 0.02);
}

TEST(ClientPlacement, AvoidsFailedAndDeadReplicasWhileAnotherIsLeft) {
  PeerPlacement p = two_replicas(0.5f, 0.5f);
  ClientPlacement placement = make(p);
  for (int t = 0; t < 200; ++t) EXPECT_EQ(placement.choose_worker(0, 0, t, {0}), 1);
  for (int t = 0; t < 200; ++t) EXPECT_EQ(placement.choose_worker(0, 1, t, {2}), 2) << "the only replica stays";
  p.dead = {1};
  ClientPlacement with_dead = make(p);
  for (int t = 0; t < 200; ++t) EXPECT_EQ(with_dead.choose_worker(0, 0, t), 0);
}

// One placement model: the client's choice is choose_replica on the very table the coordinator planned
// and sent, whatever order the wire listed the replicas in.
TEST(ClientPlacement, ChoosesAsChooseReplicaOnTheCoordinatorsTable) {
  PlacementTable table;
  table.epoch = 4;
  table.workers = {{0, "127.0.0.1:1", WorkerState::Active},
                   {1, "127.0.0.1:2", WorkerState::Active},
                   {2, "127.0.0.1:3", WorkerState::Dead}};
  table.assignments[{0, 0}] = {{0, 0.2f}, {1, 0.5f}, {2, 0.3f}};
  table.assignments[{1, 3}] = {{1, 1.f}};
  capnp::MallocMessageBuilder message;
  auto root = message.initRoot<wire::Placement>();
  placement_to_wire(table, root);
  auto replicas = root.getAssignments()[0].getReplicas();  // the wire lists them backwards
  replicas[0].setWorkerId(2);
  replicas[0].setShare(0.3f);
  replicas[2].setWorkerId(0);
  replicas[2].setShare(0.2f);
  ClientPlacement placement(root.asReader());
  EXPECT_EQ(placement.table(), table);
  for (int t = 0; t < 500; ++t) {
    EXPECT_EQ(placement.choose_worker(0, 0, t), choose_replica(table, {0, 0}, t)) << "token " << t;
    EXPECT_NE(placement.choose_worker(0, 0, t), 2) << "worker 2 is dead";
    EXPECT_EQ(placement.choose_worker(0, 0, t, {1}), choose_replica(table, {0, 0}, t, {1}));
    EXPECT_EQ(placement.choose_worker(1, 3, t), 1);
  }
  EXPECT_EQ(choose_replica(table, {5, 5}, 0), -1);
}

}  // namespace
}  // namespace moe::test
