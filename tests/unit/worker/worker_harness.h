// Runs a WorkerService in-process against a FakeCoordinator and plays the coordinator's and the
// client's parts with real Connections on 127.0.0.1: prepare / commit / release, forward requests, and
// the reference outputs of the same model computed by LocalEngine / the CPU backend directly.
#pragma once

#include <gtest/gtest.h>

#include <capnp/message.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "runtime/engine/local_engine.h"
#include "runtime/model/layer_source_factory.h"
#include "runtime/net/io_pool.h"
#include "runtime/routing/dispatch_plan.h"
#include "runtime/wire/cluster_auth.h"
#include "runtime/wire/envelope_util.h"
#include "runtime/wire/tensor_pack.h"
#include "tests/unit/worker/fake_coordinator.h"
#include "worker/worker_service.h"

namespace moe::test {

using namespace std::chrono_literals;

inline Matrix random_hidden(int64_t rows, int64_t hidden, uint32_t seed) {
  Matrix x(rows, hidden);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  for (float& v : x.data) v = dist(rng);
  return x;
}

// Every expert of every MoE layer of `spec`.
inline std::set<ExpertKey> all_experts(const ModelSpec& spec) {
  std::set<ExpertKey> experts;
  for (int32_t layer : spec.moe_layers) {
    for (int32_t e = 0; e < spec.experts_per_layer(); ++e) experts.insert({layer, e});
  }
  return experts;
}

struct ForwardCall {
  uint64_t epoch = 1;
  int32_t layer = 0;
  wire::DType dtype = wire::DType::F32;
  Matrix x;
  std::vector<TokenAssignment> assignments;
  std::string cluster_token;  // empty: none sent
  uint64_t weight_version = 0;  // 0: the worker's current one
};

// Fills a forwardRequest envelope. Raw sizes are taken from `call`, so tests can break them on purpose.
inline void build_forward(capnp::MallocMessageBuilder& message, const ForwardCall& call) {
  auto request = message.initRoot<wire::Envelope>().initForwardRequest();
  request.setEpoch(call.epoch);
  request.setWeightVersion(call.weight_version);
  request.setLayer(call.layer);
  request.setDtype(call.dtype);
  request.setNumTokens(static_cast<uint32_t>(call.x.rows));
  request.setHidden(static_cast<uint32_t>(call.x.cols));
  set_cluster_token(message, call.cluster_token);
  auto tokens = request.initTokens(packed_tensor_bytes(call.dtype, call.x.data.size()));
  pack_tensor(call.x.data, call.dtype, tokens);
  auto token_index = request.initTokenIndex(static_cast<unsigned>(call.assignments.size()));
  auto expert_id = request.initExpertId(static_cast<unsigned>(call.assignments.size()));
  auto weight = request.initWeight(static_cast<unsigned>(call.assignments.size()));
  for (unsigned i = 0; i < call.assignments.size(); ++i) {
    token_index.set(i, call.assignments[i].token);
    expert_id.set(i, call.assignments[i].expert);
    weight.set(i, call.assignments[i].weight);
  }
}

// The forwardReply's output as f32 [numTokens x hidden]; fails the test on an error reply.
inline Matrix forward_output(const Frame& reply) {
  expect_kind(reply.envelope(), wire::Envelope::FORWARD_REPLY);
  auto r = reply.envelope().getForwardReply();
  Matrix out(r.getNumTokens(), r.getHidden());
  unpack_tensor(r.getOutput(), r.getDtype(), out.data, "forwardReply.output");
  return out;
}

// The code of an error reply (ADD_FAILURE when it is not one).
inline wire::ErrorCode error_code(const Frame& reply, uint64_t* current_epoch = nullptr) {
  auto envelope = reply.envelope();
  if (envelope.which() != wire::Envelope::ERROR) {
    ADD_FAILURE() << "expected an error reply, got " << message_kind_name(envelope);
    return wire::ErrorCode::INTERNAL;
  }
  if (current_epoch) *current_epoch = envelope.getError().getCurrentEpoch();
  return envelope.getError().getCode();
}

inline std::string error_message(const Frame& reply) { return reply.envelope().getError().getMessage(); }

// Largest |a - b| relative to max(1, max |b|).
inline double max_relative_error(const Matrix& got, const Matrix& want) {
  EXPECT_EQ(got.rows, want.rows);
  EXPECT_EQ(got.cols, want.cols);
  double scale = 1.0, worst = 0.0;
  for (float v : want.data) scale = std::max(scale, static_cast<double>(std::abs(v)));
  for (size_t i = 0; i < std::min(got.data.size(), want.data.size()); ++i) {
    worst = std::max(worst, static_cast<double>(std::abs(got.data[i] - want.data[i])));
  }
  return worst / scale;
}

class WorkerHarness {
 public:
  explicit WorkerHarness(const std::string& source = "synthetic:tiny:0", WorkerOptions options = {})
      : coordinator(pool.context(), source), control_token(options.cluster_token) {
    options.coordinator = coordinator.address();
    options.listen = "127.0.0.1:0";
    options.threads = 1;
    options.name = options.name.empty() ? "test-worker" : options.name;
    options.retry_min_ms = 20;
    options.retry_max_ms = 200;
    worker = std::make_unique<WorkerService>(options);
    worker->start();
    EXPECT_TRUE(coordinator.wait_registrations(1)) << "the worker did not register";
    control = Connection::connect(pool.context(), worker->address(), 2000ms);
  }
  ~WorkerHarness() {
    for (auto& c : clients) c->close();
    control->close();
    worker->stop();
  }

  const ModelSpec& spec() const { return coordinator.spec(); }

  Frame call(Connection& connection, capnp::MallocMessageBuilder& message) {
    return connection.request(message, 10s).get();
  }

  // The worker's control key, from its latest registration with the fake coordinator.
  std::string control_key() const {
    auto seen = coordinator.registrations();
    return seen.empty() ? std::string() : seen.back().control_key;
  }

  // Sends an epoch-moving request the way the coordinator does: the cluster token and the control key.
  Frame call_control(capnp::MallocMessageBuilder& message) {
    auto envelope = message.getRoot<wire::Envelope>();
    set_cluster_token(envelope, control_token);
    const std::string key = control_key();
    envelope.setControlKey(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(key.data()), key.size()));
    return call(*control, message);
  }

  // `sources`: the workers a gained expert can be streamed from (--no-shared-storage), by expert.
  // `version` / `source`: a new weight version to load the experts in (0: the current one).
  Frame send_prepare(uint64_t epoch, const std::set<ExpertKey>& experts,
                     const std::map<ExpertKey, std::vector<std::string>>& sources = {}, uint64_t version = 0,
                     const std::string& source = "") {
    capnp::MallocMessageBuilder message;
    auto prepare = message.initRoot<wire::Envelope>().initPrepare();
    prepare.setEpoch(epoch);
    prepare.setWeightVersion(version);
    prepare.setWeightSource(source);
    auto load = prepare.initLoad(static_cast<unsigned>(experts.size()));
    unsigned i = 0;
    for (const ExpertKey& key : experts) {
      load[i].setLayer(key.layer);
      load[i].setExpert(key.expert);
      ++i;
    }
    auto list = prepare.initSources(static_cast<unsigned>(sources.size()));
    i = 0;
    for (const auto& [key, addresses] : sources) {
      list[i].initExpert().setLayer(key.layer);
      list[i].getExpert().setExpert(key.expert);
      auto out = list[i].initAddresses(static_cast<unsigned>(addresses.size()));
      for (unsigned a = 0; a < addresses.size(); ++a) out.set(a, addresses[a]);
      ++i;
    }
    return call_control(message);
  }

  // A placement where this worker (FakeCoordinator::kWorkerId) hosts `mine` and worker 99 the rest;
  // `tamper`, when given, edits the placement before it is sent.
  Frame send_commit(uint64_t epoch, const std::set<ExpertKey>& mine, uint64_t version = 0, const std::string& source = "",
                    const std::function<void(wire::Placement::Builder)>& tamper = {}) {
    capnp::MallocMessageBuilder message;
    auto commit = message.initRoot<wire::Envelope>().initCommit();
    commit.setWeightSource(source);
    auto placement = commit.initPlacement();
    placement.setEpoch(epoch);
    placement.setWeightVersion(version);
    auto workers = placement.initWorkers(2);
    workers[0].setId(FakeCoordinator::kWorkerId);
    workers[0].setAddress(worker->address());
    workers[0].setState(wire::WorkerState::ACTIVE);
    workers[1].setId(99);
    workers[1].setAddress("127.0.0.1:1");
    workers[1].setState(wire::WorkerState::ACTIVE);
    std::set<ExpertKey> all = all_experts(spec());
    auto assignments = placement.initAssignments(static_cast<unsigned>(all.size()));
    unsigned i = 0;
    for (const ExpertKey& key : all) {
      assignments[i].setLayer(key.layer);
      assignments[i].setExpert(key.expert);
      auto replica = assignments[i].initReplicas(1);
      replica[0].setWorkerId(mine.count(key) ? FakeCoordinator::kWorkerId : 99);
      replica[0].setShare(1.f);
      ++i;
    }
    if (tamper) tamper(placement);
    return call_control(message);
  }

  Frame send_release(uint64_t epoch, bool drop_prepared = false) {
    capnp::MallocMessageBuilder message;
    auto release = message.initRoot<wire::Envelope>().initRelease();
    release.setEpoch(epoch);
    release.setDropPrepared(drop_prepared);
    return call_control(message);
  }

  // prepare + commit, expecting both to succeed.
  void place(uint64_t epoch, const std::set<ExpertKey>& mine) {
    Frame ack = send_prepare(epoch, mine);
    ASSERT_EQ(ack.envelope().which(), wire::Envelope::PREPARE_ACK) << message_kind_name(ack.envelope());
    EXPECT_EQ(ack.envelope().getPrepareAck().getEpoch(), epoch);
    Frame committed = send_commit(epoch, mine);
    ASSERT_EQ(committed.envelope().which(), wire::Envelope::ACK) << message_kind_name(committed.envelope());
    EXPECT_EQ(committed.envelope().getAck().getEpoch(), epoch);
  }

  Connection& client(size_t index = 0) {
    while (clients.size() <= index) clients.push_back(Connection::connect(pool.context(), worker->address(), 2000ms));
    return *clients[index];
  }

  Frame forward(const ForwardCall& call_args, size_t client_index = 0) {
    capnp::MallocMessageBuilder message;
    build_forward(message, call_args);
    return call(client(client_index), message);
  }

  IoPool pool{2};
  FakeCoordinator coordinator;
  std::string control_token;  // sent with prepare, commit and release (the worker's --cluster-token)
  std::unique_ptr<WorkerService> worker;
  std::shared_ptr<Connection> control;
  std::vector<std::shared_ptr<Connection>> clients;
};

// The reference: the whole model in one LocalEngine on the CPU backend.
class Reference {
 public:
  explicit Reference(const std::string& source)
      : source_(open_layer_source(ModelRef::parse(source))), engine_(*source_, make_cpu_backend(1)) {}

  // Routes x with the model's router; returns the engine's output and the assignments it used.
  Matrix forward(int32_t layer, const Matrix& x, std::vector<TokenAssignment>& assignments) {
    RoutingResult routing;
    Matrix out = engine_.forward(layer, x, &routing);
    assignments = make_assignments(routing, engine_.spec());
    return out;
  }
  // The expert sum for given assignments (no routing).
  Matrix compute(int32_t layer, const Matrix& x, const std::vector<TokenAssignment>& assignments) {
    Matrix out(x.rows, x.cols);
    engine_.backend().forward(layer, x.data.data(), x.rows, x.cols, assignments, out.data.data());
    return out;
  }

 private:
  std::unique_ptr<LayerSource> source_;
  LocalEngine engine_;
};

}  // namespace moe::test
