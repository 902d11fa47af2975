// Who may say what to a worker (docs/architecture.md, "Who may say what"): with --cluster-token every
// request needs the token in its envelope (reads and weight streaming included) and every refusal is
// counted; whatever the token, prepare / commit / release move the worker's epochs only when they bring
// back the control key the worker gave the coordinator it registered with (issue 12's two-frame attack on a
// worker started without a token); error replies say whether they are worth retrying.
#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>

#include "tests/unit/worker/worker_harness.h"
#include "worker/worker_flags.h"

namespace moe::test {
namespace {

double errors_counted(WorkerService& worker, const std::string& code) {
  for (const auto& family : worker.metrics_registry().Collect()) {
    if (family.name != "moe_worker_errors_total") continue;
    for (const auto& metric : family.metric) {
      for (const auto& label : metric.label) {
        if (label.name == "code" && label.value == code) return metric.counter.value;
      }
    }
  }
  return -1;
}

// A Commit naming `epoch` in which this worker hosts nothing, sent the way a stranger would: on its own
// connection, with `key` as the control key (empty: none).
Frame stranger_commit(WorkerHarness& h, Connection& connection, uint64_t epoch, const std::string& key) {
  capnp::MallocMessageBuilder message;
  auto envelope = message.initRoot<wire::Envelope>();
  auto placement = envelope.initCommit().initPlacement();
  placement.setEpoch(epoch);
  auto workers = placement.initWorkers(1);
  workers[0].setId(FakeCoordinator::kWorkerId);
  workers[0].setAddress(h.worker->address());
  if (!key.empty()) envelope.setControlKey(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(key.data()), key.size()));
  return connection.request(message, 10s).get();
}

Frame stranger_release(Connection& connection, uint64_t epoch, const std::string& key) {
  capnp::MallocMessageBuilder message;
  auto envelope = message.initRoot<wire::Envelope>();
  envelope.initRelease().setEpoch(epoch);
  if (!key.empty()) envelope.setControlKey(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(key.data()), key.size()));
  return connection.request(message, 10s).get();
}

TEST(WorkerAuthorization, TwoFramesWithoutTheControlKeyCannotMoveTheEpochOfATokenlessWorker) {
  WorkerHarness h;  // no --cluster-token: the README's by-hand setup
  Reference reference("synthetic:tiny:0");
  h.place(1, {{0, 0}, {0, 1}});
  ASSERT_FALSE(h.control_key().empty());
  auto stranger = Connection::connect(h.pool.context(), h.worker->address(), 2000ms);
  const uint64_t max = UINT64_MAX;
  for (const std::string& key : {std::string(), std::string("0123456789abcdef")}) {
    Frame commit = stranger_commit(h, *stranger, max, key);
    EXPECT_EQ(error_code(commit), wire::ErrorCode::UNAUTHORIZED) << error_message(commit);
    EXPECT_FALSE(commit.envelope().getError().getRetryable());
    Frame release = stranger_release(*stranger, max, key);
    EXPECT_EQ(error_code(release), wire::ErrorCode::UNAUTHORIZED) << error_message(release);
  }
  EXPECT_EQ(h.worker->current_epoch(), 1u);
  EXPECT_EQ(h.worker->oldest_served_epoch(), 1u);
  EXPECT_EQ(errors_counted(*h.worker, "unauthorized"), 4.0);

  // Forwards planned on epoch 1 are still served.
  ForwardCall call;
  call.x = random_hidden(2, h.spec().hidden_size, 5);
  call.assignments = {{0, 0, 1.f}, {1, 1, 1.f}};
  Matrix want = reference.compute(0, call.x, call.assignments);
  EXPECT_LT(max_relative_error(forward_output(h.forward(call)), want), 1e-5);

  // The coordinator the worker registered with (the harness sends its key) still moves it.
  h.place(2, {{0, 2}});
  EXPECT_EQ(h.worker->current_epoch(), 2u);
  stranger->close();
}

TEST(WorkerAuthorization, EveryRequestNeedsTheTokenWhenTheWorkerHasOne) {
  WorkerOptions options;
  options.cluster_token = "secret";
  options.transport.allow_cleartext_token = true;  // loopback test without TLS
  WorkerHarness h("synthetic:tiny:0", options);
  h.place(1, {{0, 0}});
  EXPECT_EQ(h.coordinator.registrations().back().cluster_token, "secret");  // its own requests carry it

  using Fill = void (*)(wire::Envelope::Builder);
  const std::vector<std::pair<std::string, Fill>> reads = {
      {"getModel", [](wire::Envelope::Builder e) { e.setGetModel(); }},
      {"getPlacement", [](wire::Envelope::Builder e) { e.setGetPlacement(); }},
      {"fetchExpert", [](wire::Envelope::Builder e) { e.initFetchExpert().setMaxBytes(64); }},
      {"forwardRequest", [](wire::Envelope::Builder e) { e.initForwardRequest().setEpoch(1); }},
  };
  for (const auto& [name, fill] : reads) {
    for (const std::string& token : {std::string(), std::string("wrong"), std::string("secre")}) {
      capnp::MallocMessageBuilder message;
      fill(message.initRoot<wire::Envelope>());
      set_cluster_token(message, token);
      Frame reply = h.call(h.client(), message);
      ASSERT_EQ(reply.envelope().which(), wire::Envelope::ERROR) << name << " with token '" << token << "'";
      EXPECT_EQ(error_code(reply), wire::ErrorCode::UNAUTHORIZED) << name;
      EXPECT_NE(error_message(reply).find(name), std::string::npos) << error_message(reply);
      EXPECT_EQ(error_message(reply).find("secret"), std::string::npos) << error_message(reply);
    }
  }
  EXPECT_EQ(errors_counted(*h.worker, "unauthorized"), 12.0);
  // With the token, the reads are answered.
  capnp::MallocMessageBuilder message;
  message.initRoot<wire::Envelope>().setGetPlacement();
  set_cluster_token(message, "secret");
  EXPECT_EQ(h.call(h.client(), message).envelope().which(), wire::Envelope::PLACEMENT);
}

TEST(WorkerAuthorization, ErrorRepliesSayWhetherARetryCanHelp) {
  WorkerHarness h;
  h.place(2, {{0, 0}});
  h.send_release(2);
  ForwardCall stale;
  stale.epoch = 1;  // released: staleEpoch, worth retrying after a placement refresh
  stale.x = random_hidden(1, h.spec().hidden_size, 1);
  stale.assignments = {{0, 0, 1.f}};
  Frame reply = h.forward(stale);
  ASSERT_EQ(error_code(reply), wire::ErrorCode::STALE_EPOCH);
  EXPECT_TRUE(reply.envelope().getError().getRetryable());
  ForwardCall bad = stale;
  bad.epoch = 2;
  bad.layer = 9;  // no such layer: retrying cannot help
  reply = h.forward(bad);
  ASSERT_EQ(error_code(reply), wire::ErrorCode::UNKNOWN_LAYER);
  EXPECT_FALSE(reply.envelope().getError().getRetryable());
}

TEST(WorkerAuthorization, TokenFromAFile) {
  const std::string path = ::testing::TempDir() + "worker-token-file";
  {
    std::ofstream out(path);
    out << "  from-a-file\n";
  }
  WorkerOptions options;
  options.cluster_token_file = path;
  options.transport.allow_cleartext_token = true;  // loopback test without TLS
  WorkerHarness h("synthetic:tiny:0", options);
  EXPECT_EQ(h.coordinator.registrations().back().cluster_token, "from-a-file");
  h.control_token = "from-a-file";
  h.place(1, {{0, 0}});
  EXPECT_EQ(h.worker->current_epoch(), 1u);

  WorkerOptions both = options;
  both.cluster_token = "flag";
  EXPECT_THROW(check_worker_options(both), std::invalid_argument);
  WorkerOptions missing;
  missing.coordinator = "127.0.0.1:1";
  missing.transport.allow_cleartext_token = true;
  missing.cluster_token_file = path + ".missing";
  EXPECT_THROW(check_worker_options(missing), std::invalid_argument);
  // A token from a file counts as a token for the cleartext rule too.
  WorkerOptions cleartext;
  cleartext.coordinator = "127.0.0.1:1";
  cleartext.cluster_token_file = path;
  EXPECT_THROW(check_worker_options(cleartext), std::invalid_argument);
}

}  // namespace
}  // namespace moe::test
