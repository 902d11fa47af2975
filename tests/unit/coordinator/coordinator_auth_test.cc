// Who may say what to the coordinator (docs/architecture.md, "Who may say what"): with --cluster-token every
// request needs it (status, placement and model reads included), each refusal counted in
// moe_coordinator_errors_total; heartbeats count only on the connection their worker registered on (issue
// 12: spoofed heartbeats kept a stopped worker listed and fed the rebalancer made-up load); the text fields
// and expert lists of registrations and heartbeats are bounded; prepare, commit and release carry the
// control key each worker registered with.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "runtime/wire/cluster_auth.h"
#include "runtime/wire/wire_error.h"
#include "tests/unit/coordinator/coordinator_test_util.h"

namespace moe {
namespace {

using namespace test;

double errors_counted(CoordinatorService& coordinator, const std::string& code) {
  for (const auto& family : coordinator.metrics_registry().Collect()) {
    if (family.name != "moe_coordinator_errors_total") continue;
    for (const auto& metric : family.metric) {
      for (const auto& label : metric.label) {
        if (label.name == "code" && label.value == code) return metric.counter.value;
      }
    }
  }
  return -1;
}

Frame ask_with(Connection& connection, void (*fill)(wire::Envelope::Builder), const std::string& token) {
  capnp::MallocMessageBuilder message;
  fill(message.initRoot<wire::Envelope>());
  set_cluster_token(message, token);
  return connection.request(message, 2000ms).get();
}

TEST(CoordinatorAuthorization, ReadsAndControlNeedTheClusterToken) {
  CoordinatorConfig config = fast_config();
  config.cluster_token = "s3cret";
  CoordinatorService coordinator(config);
  TestWorker worker;
  worker.register_with(coordinator.address(), "s3cret");
  ASSERT_TRUE(eventually([&] { return coordinator.epoch() == 1; }));

  IoPool pool(1);
  auto connection = Connection::connect(pool.context(), coordinator.address(), 2000ms);
  using Fill = void (*)(wire::Envelope::Builder);
  const std::vector<std::pair<std::string, Fill>> requests = {
      {"status", [](wire::Envelope::Builder e) { e.setStatus(); }},
      {"getPlacement", [](wire::Envelope::Builder e) { e.setGetPlacement(); }},
      {"getModel", [](wire::Envelope::Builder e) { e.setGetModel(); }},
      {"heartbeat", [](wire::Envelope::Builder e) { e.initHeartbeat().setWorkerId(1); }},
      {"rebalance", [](wire::Envelope::Builder e) { e.initRebalance().setDryRun(true); }},
      {"drain", [](wire::Envelope::Builder e) { e.initDrain().setWorkerId(1); }},
  };
  for (const auto& [name, fill] : requests) {
    for (const std::string token : {"", "wrong"}) {
      Frame reply = ask_with(*connection, fill, token);
      ASSERT_EQ(reply.envelope().which(), wire::Envelope::ERROR) << name << " with token '" << token << "'";
      EXPECT_EQ(reply.envelope().getError().getCode(), wire::ErrorCode::UNAUTHORIZED) << name;
      EXPECT_FALSE(reply.envelope().getError().getRetryable());
      EXPECT_NE(std::string(reply.envelope().getError().getMessage().cStr()).find(name), std::string::npos);
    }
  }
  EXPECT_EQ(errors_counted(coordinator, "unauthorized"), 12.0);
  EXPECT_EQ(ask_with(*connection, requests[0].second, "s3cret").envelope().which(), wire::Envelope::STATUS_REPLY);
  EXPECT_EQ(ask_with(*connection, requests[1].second, "s3cret").envelope().which(), wire::Envelope::PLACEMENT);
  EXPECT_EQ(ask_with(*connection, requests[2].second, "s3cret").envelope().which(), wire::Envelope::MODEL_INFO);
  connection->close();
}

TEST(CoordinatorAuthorization, HeartbeatsFromAnotherConnectionNeitherKeepAWorkerAliveNorReportLoad) {
  CoordinatorConfig config = fast_config();
  config.cluster_token = "s3cret";
  config.min_workers = 2;
  config.rebalance_threshold = 0;
  CoordinatorService coordinator(config);
  TestWorker stopped, other;
  stopped.register_with(coordinator.address(), "s3cret");
  other.register_with(coordinator.address(), "s3cret");
  other.start_heartbeats(20ms);
  ASSERT_TRUE(eventually([&] { return coordinator.epoch() == 1; }));
  const ExpertKey hosted = coordinator.placement().experts_on(stopped.id()).front();

  // `stopped` sends nothing more (a SIGSTOPped worker); a spoofer with the token heartbeats in its name,
  // with a made-up load, on a connection of its own.
  TestWorker spoofer;
  spoofer.connect(coordinator.address());
  std::atomic<bool> spoofing{true};
  std::atomic<int> refused{0};
  std::thread spoof([&] {
    for (int i = 0; i < 400 && spoofing; ++i) {  // bounded: 400 x 10 ms
      capnp::MallocMessageBuilder message;
      auto heartbeat = message.initRoot<wire::Envelope>().initHeartbeat();
      heartbeat.setWorkerId(stopped.id());
      heartbeat.setWindowMs(1000);
      auto load = heartbeat.initLoad(1);
      load[0].setLayer(hosted.layer);
      load[0].setExpert(hosted.expert);
      load[0].setTokens(1000000);
      set_cluster_token(message, "s3cret");
      try {
        Frame reply = spoofer.coordinator_connection()->request(message, 2000ms).get();
        if (reply.envelope().which() == wire::Envelope::ERROR &&
            reply.envelope().getError().getCode() == wire::ErrorCode::UNAUTHORIZED) {
          ++refused;
        }
      } catch (const std::exception&) {
      }
      std::this_thread::sleep_for(10ms);
    }
  });
  // The lease runs out although the spoofer keeps heartbeating: the worker is dead, its experts move.
  const bool moved = eventually([&] {
    const PlacementTable table = coordinator.placement();
    return table.epoch >= 2 && table.experts_on(stopped.id()).empty();
  }, 5000ms);
  spoofing = false;
  spoof.join();
  EXPECT_TRUE(moved) << "the spoofed heartbeats kept worker " << stopped.id() << " alive";
  EXPECT_GT(refused.load(), 0);
  // None of the made-up load reached the status.
  Client client(coordinator.address(), "s3cret");
  Frame reply = client.status();
  ASSERT_EQ(reply.envelope().which(), wire::Envelope::STATUS_REPLY);
  for (auto worker : reply.envelope().getStatusReply().getWorkers()) {
    for (auto load : worker.getLoad()) EXPECT_LT(load.getTokens(), 1000000u) << "worker " << worker.getInfo().getId();
  }
  other.stop_heartbeats();
}

TEST(CoordinatorAuthorization, RegistrationTextAndExpertListsAreBounded) {
  CoordinatorService coordinator(fast_config());
  IoPool pool(1);
  auto connection = Connection::connect(pool.context(), coordinator.address(), 2000ms);
  auto registration = [&](auto fill) {
    capnp::MallocMessageBuilder message;
    auto r = message.initRoot<wire::Envelope>().initRegisterWorker();
    r.setName("w");
    r.setAddress("127.0.0.1:1");
    r.setBackend("cpu");
    fill(r);
    return connection->request(message, 2000ms).get();
  };
  const std::string long_text(100000, 'x');
  const std::vector<std::pair<std::string, std::function<void(wire::RegisterWorker::Builder)>>> cases = {
      {"name", [&](wire::RegisterWorker::Builder r) { r.setName(long_text); }},
      {"address", [&](wire::RegisterWorker::Builder r) { r.setAddress("127.0.0.1:1" + std::string(300, '1')); }},
      {"backend", [&](wire::RegisterWorker::Builder r) { r.setBackend(std::string(257, 'c')); }},
      {"hosted", [&](wire::RegisterWorker::Builder r) { r.initHosted(1)[0].setExpert(100); }},
      {"hosted", [&](wire::RegisterWorker::Builder r) { r.initHosted(17); }},  // the model has 16 experts
      {"control key", [&](wire::RegisterWorker::Builder r) { r.initControlKey(17); }},
  };
  for (const auto& [field, fill] : cases) {
    Frame reply = registration(fill);
    ASSERT_EQ(reply.envelope().which(), wire::Envelope::ERROR) << field;
    EXPECT_EQ(reply.envelope().getError().getCode(), wire::ErrorCode::BAD_REQUEST) << field;
    EXPECT_NE(std::string(reply.envelope().getError().getMessage().cStr()).find(field), std::string::npos)
        << reply.envelope().getError().getMessage().cStr();
  }
  EXPECT_EQ(errors_counted(coordinator, "badRequest"), static_cast<double>(cases.size()));
  // A 256-byte name is fine.
  Frame ok = registration([](wire::RegisterWorker::Builder r) { r.setName(std::string(256, 'n')); });
  EXPECT_EQ(ok.envelope().which(), wire::Envelope::REGISTER_REPLY);
  // A heartbeat naming an expert the model lacks is refused too.
  TestWorker worker;
  worker.register_with(coordinator.address());
  EXPECT_THROW(worker.heartbeat({{ExpertKey{5, 0}, 1}}), RemoteError);
  connection->close();
}

TEST(CoordinatorAuthorization, ControlRequestsCarryEachWorkersKey) {
  CoordinatorConfig config = fast_config();
  config.min_workers = 2;
  CoordinatorService coordinator(config);
  TestWorker a, b;  // each refuses prepare / commit / release without its own key
  a.register_with(coordinator.address());
  b.register_with(coordinator.address());
  ASSERT_TRUE(eventually([&] { return !a.releases().empty() && !b.releases().empty(); }));
  EXPECT_EQ(a.refused_control(), 0u);
  EXPECT_EQ(b.refused_control(), 0u);
  EXPECT_FALSE(a.commits().empty());
  EXPECT_EQ(coordinator.epoch(), 1u);
}

}  // namespace
}  // namespace moe
