// Requests: registration refused without the cluster token, getModel (spec, routers, source), status
// (epoch, workers, hosted experts, last window loads, lease remaining, per-layer imbalance), and a
// typed error for requests the coordinator does not serve.
#include <gtest/gtest.h>

#include <cstring>

#include <nlohmann/json.hpp>

#include "runtime/model/layer_source_factory.h"
#include "runtime/model/model_spec.h"
#include "runtime/wire/wire_error.h"
#include "tests/unit/coordinator/coordinator_test_util.h"

namespace moe {
namespace {

using namespace test;

TEST(CoordinatorRequests, RegistrationWithoutTheClusterTokenIsUnauthorized) {
  CoordinatorConfig config = fast_config();
  config.cluster_token = "s3cret";
  CoordinatorService coordinator(config);
  TestWorker worker;
  for (const std::string token : {"", "wrong"}) {
    try {
      worker.register_with(coordinator.address(), token);
      FAIL() << "registered with token '" << token << "'";
    } catch (const RemoteError& e) {
      EXPECT_EQ(e.code(), wire::ErrorCode::UNAUTHORIZED);
      EXPECT_NE(e.remote_message().find("registerWorker"), std::string::npos) << e.remote_message();
    }
  }
  // Refused registrations leave no member behind (status is answered under the same lock they took).
  {
    Client client(coordinator.address(), "s3cret");
    Frame status = client.status();
    ASSERT_EQ(status.envelope().which(), wire::Envelope::STATUS_REPLY);
    EXPECT_EQ(status.envelope().getStatusReply().getWorkers().size(), 0u);
  }
  EXPECT_EQ(coordinator.epoch(), 0u);
  auto reply = worker.register_with(coordinator.address(), "s3cret");
  EXPECT_GT(reply.getWorkerId(), 0u);
  EXPECT_EQ(reply.getLeaseMs(), config.lease_ms);
  EXPECT_EQ(reply.getHeartbeatMs(), config.heartbeat_ms);
}

TEST(CoordinatorRequests, GetModelCarriesSpecRoutersAndSource) {
  CoordinatorConfig config = fast_config();
  config.model.synthetic = "tiny-deepseek";
  config.model.synthetic_seed = 7;
  CoordinatorService coordinator(config);
  Client client(coordinator.address());
  Frame reply = client.get_model();
  ASSERT_EQ(reply.envelope().which(), wire::Envelope::MODEL_INFO);
  auto info = reply.envelope().getModelInfo();
  EXPECT_EQ(std::string(info.getSource().cStr()), "synthetic:tiny-deepseek:7");
  auto expected = open_layer_source(ModelRef::parse(info.getSource().cStr()));
  ModelSpec spec = parse_model_spec(nlohmann::json::parse(info.getSpecJson().cStr()));
  EXPECT_EQ(spec.moe_layers, expected->spec().moe_layers);
  EXPECT_EQ(spec.num_experts, expected->spec().num_experts);
  ASSERT_EQ(info.getRouters().size(), expected->spec().moe_layers.size());
  for (auto router : info.getRouters()) {
    RouterWeights want = expected->router_weights(router.getLayer());
    EXPECT_EQ(router.getNumExperts(), static_cast<uint32_t>(want.gate.rows));
    EXPECT_EQ(router.getHidden(), static_cast<uint32_t>(want.gate.cols));
    ASSERT_EQ(router.getWeight().size(), want.gate.data.size() * sizeof(float));
    EXPECT_EQ(std::memcmp(router.getWeight().begin(), want.gate.data.data(), router.getWeight().size()), 0);
    ASSERT_EQ(router.getScoreBias().size(), want.correction_bias.size() * sizeof(float));
    EXPECT_FALSE(want.correction_bias.empty());
  }
}

TEST(CoordinatorRequests, StatusReportsWorkersExpertsLoadsLeaseAndBalance) {
  CoordinatorConfig config = fast_config();
  config.min_workers = 2;
  config.lease_ms = 5000;
  CoordinatorService coordinator(config);
  TestWorker a, b;
  a.register_with(coordinator.address());
  b.register_with(coordinator.address());
  ASSERT_TRUE(eventually([&] { return coordinator.epoch() == 1; }));
  const PlacementTable table = coordinator.placement();
  // Layer 0 tokens: 100 on A, 300 on B => imbalance max / mean = 300 / 200 = 1.5.
  const ExpertKey on_a = table.experts_on(a.id()).front(), on_b = table.experts_on(b.id()).front();
  ASSERT_EQ(on_a.layer, 0);
  ASSERT_EQ(on_b.layer, 0);
  EXPECT_FALSE(a.heartbeat({{on_a, 100}}));
  EXPECT_FALSE(b.heartbeat({{on_b, 300}}));

  Client client(coordinator.address());
  Frame reply = client.status();
  ASSERT_EQ(reply.envelope().which(), wire::Envelope::STATUS_REPLY);
  auto status = reply.envelope().getStatusReply();
  EXPECT_EQ(status.getEpoch(), 1u);
  EXPECT_EQ(std::string(status.getModelName().cStr()), "tiny");
  ASSERT_EQ(status.getWorkers().size(), 2u);
  for (auto worker : status.getWorkers()) {
    const uint32_t id = worker.getInfo().getId();
    EXPECT_EQ(worker.getInfo().getState(), wire::WorkerState::ACTIVE);
    EXPECT_EQ(std::string(worker.getInfo().getAddress().cStr()), id == a.id() ? a.address() : b.address());
    std::vector<ExpertKey> hosted;
    for (auto ref : worker.getHosted()) hosted.push_back({ref.getLayer(), ref.getExpert()});
    EXPECT_EQ(hosted, table.experts_on(id));
    ASSERT_EQ(worker.getLoad().size(), 1u);
    EXPECT_EQ(worker.getLoad()[0].getTokens(), id == a.id() ? 100u : 300u);
    EXPECT_GT(worker.getLeaseRemainingMs(), 0u);
    EXPECT_LE(worker.getLeaseRemainingMs(), config.lease_ms);
  }
  ASSERT_EQ(status.getBalance().size(), 1u);  // layer 1 had no tokens
  EXPECT_EQ(status.getBalance()[0].getLayer(), 0);
  EXPECT_FLOAT_EQ(status.getBalance()[0].getImbalance(), 1.5f);
}

TEST(CoordinatorRequests, HeartbeatFromUnknownWorkerAsksToRegisterAndOtherKindsAreRefused) {
  CoordinatorService coordinator(fast_config());
  TestWorker stranger;
  stranger.connect(coordinator.address());
  EXPECT_TRUE(stranger.heartbeat());
  capnp::MallocMessageBuilder message;
  message.initRoot<wire::Envelope>().initForwardRequest();
  Frame reply = stranger.coordinator_connection()->request(message, 2000ms).get();
  ASSERT_EQ(reply.envelope().which(), wire::Envelope::ERROR);
  EXPECT_EQ(reply.envelope().getError().getCode(), wire::ErrorCode::BAD_REQUEST);
}

}  // namespace
}  // namespace moe
