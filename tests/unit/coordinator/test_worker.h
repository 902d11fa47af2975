// A real protocol peer playing a worker for the coordinator tests: it listens on 127.0.0.1 and answers
// prepare (prepareAck), commit and release (ack) while recording what it was told, and it registers and
// heartbeats over its own connection to the coordinator. Like moe-worker, it hands the coordinator a
// control key at registration and refuses prepare, commit and release that do not bring it back.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <capnp/message.h>

#include "runtime/net/connection.h"
#include "runtime/net/io_pool.h"
#include "runtime/net/server.h"
#include "runtime/placement/placement_table.h"
#include "runtime/placement/placement_wire.h"
#include "runtime/wire/cluster_auth.h"
#include "runtime/wire/envelope_util.h"

namespace moe::test {

using namespace std::chrono_literals;

struct ToldPrepare {
  uint64_t epoch;
  std::vector<ExpertKey> load;
};

class TestWorker {
 public:
  TestWorker() : server_(pool_.context(), "127.0.0.1", 0, [this](Frame f, Responder r) { on_request(std::move(f), r); }) {}
  ~TestWorker() {
    stop_heartbeats();
    if (coordinator_) coordinator_->close();
    server_.stop();
    pool_.stop();
  }

  std::string address() const { return server_.address(); }
  // Answer prepare with an `internal` error from now on.
  void fail_prepares() { fail_prepare_ = true; }
  // Leave prepares unanswered from now on (the coordinator waits for its prepare timeout).
  void stall_prepares() { stall_prepare_ = true; }

  // Opens the connection to the coordinator unless one is open.
  void connect(const std::string& coordinator) {
    if (!coordinator_ || !coordinator_->is_open()) coordinator_ = Connection::connect(pool_.context(), coordinator, 2000ms);
  }
  // Connects (unless connected) and registers, reporting what its last commit gave it as moe-worker does;
  // returns the reply or throws RemoteError.
  wire::RegisterReply::Reader register_with(const std::string& coordinator, const std::string& token = "",
                                            std::optional<std::string> address_override = std::nullopt) {
    connect(coordinator);
    capnp::MallocMessageBuilder message;
    auto request = message.initRoot<wire::Envelope>().initRegisterWorker();
    request.setName("test-worker");
    request.setAddress(address_override.value_or(address()));
    request.setBackend("cpu");
    request.getCapacity().setExpertSlots(0);
    token_ = token;
    set_cluster_token(message, token);
    request.setControlKey(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(control_key_.data()), control_key_.size()));
    {  // like moe-worker: the epoch it serves, the experts its last commit gave it and the id it had
      std::lock_guard lock(mutex_);
      if (!commits_.empty()) {
        const PlacementTable& last = commits_.back();
        request.setServingEpoch(last.epoch);
        const auto mine = last.experts_on(id_);
        auto hosted = request.initHosted(static_cast<unsigned>(mine.size()));
        for (unsigned i = 0; i < mine.size(); ++i) {
          hosted[i].setLayer(mine[i].layer);
          hosted[i].setExpert(mine[i].expert);
        }
      }
      request.setPreviousId(id_);
    }
    register_reply_ = coordinator_->request(message, 2000ms).get();
    expect_kind(register_reply_.envelope(), wire::Envelope::REGISTER_REPLY);
    id_ = register_reply_.envelope().getRegisterReply().getWorkerId();
    return register_reply_.envelope().getRegisterReply();
  }
  uint32_t id() const { return id_; }

  // One heartbeat carrying `load`; returns the reply's reregister flag.
  bool heartbeat(const std::vector<std::pair<ExpertKey, uint64_t>>& load = {}) {
    capnp::MallocMessageBuilder message;
    auto request = message.initRoot<wire::Envelope>().initHeartbeat();
    request.setWorkerId(id_);
    request.setWindowMs(1000);
    set_cluster_token(message, token_);
    auto list = request.initLoad(static_cast<unsigned>(load.size()));
    for (unsigned i = 0; i < load.size(); ++i) {
      list[i].setLayer(load[i].first.layer);
      list[i].setExpert(load[i].first.expert);
      list[i].setTokens(load[i].second);
    }
    Frame reply = coordinator_->request(message, 2000ms).get();
    expect_kind(reply.envelope(), wire::Envelope::HEARTBEAT_REPLY);
    return reply.envelope().getHeartbeatReply().getReregister();
  }
  void start_heartbeats(std::chrono::milliseconds period) {
    beating_ = true;
    beat_thread_ = std::thread([this, period] {
      while (beating_) {
        try {
          heartbeat();
        } catch (const std::exception&) {
        }
        std::this_thread::sleep_for(period);
      }
    });
  }
  void stop_heartbeats() {
    beating_ = false;
    if (beat_thread_.joinable()) beat_thread_.join();
  }
  void close_coordinator_connection() { coordinator_->close(); }
  std::shared_ptr<Connection> coordinator_connection() { return coordinator_; }

  std::vector<ToldPrepare> prepares() {
    std::lock_guard lock(mutex_);
    return prepares_;
  }
  std::vector<PlacementTable> commits() {
    std::lock_guard lock(mutex_);
    return commits_;
  }
  std::vector<uint64_t> releases() {
    std::lock_guard lock(mutex_);
    return releases_;
  }
  size_t refused_control() {
    std::lock_guard lock(mutex_);
    return refused_control_;
  }

 private:
  void on_request(Frame frame, const Responder& responder) {
    auto envelope = frame.envelope();
    capnp::MallocMessageBuilder message;
    auto reply = message.initRoot<wire::Envelope>();
    std::lock_guard lock(mutex_);
    const auto key = envelope.getControlKey();
    if (std::string(reinterpret_cast<const char*>(key.begin()), key.size()) != control_key_) {
      ++refused_control_;
      responder.reply_error(wire::ErrorCode::UNAUTHORIZED, "test worker: wrong control key");
      return;
    }
    switch (envelope.which()) {
      case wire::Envelope::PREPARE: {
        ToldPrepare told{envelope.getPrepare().getEpoch(), {}};
        for (auto ref : envelope.getPrepare().getLoad()) told.load.push_back({ref.getLayer(), ref.getExpert()});
        prepares_.push_back(told);
        if (stall_prepare_) return;
        if (fail_prepare_) {
          responder.reply_error(wire::ErrorCode::INTERNAL, "test worker refuses to load");
          return;
        }
        auto ack = reply.initPrepareAck();
        ack.setEpoch(told.epoch);
        ack.setLoaded(envelope.getPrepare().getLoad());
        break;
      }
      case wire::Envelope::COMMIT:
        commits_.push_back(placement_from_wire(envelope.getCommit().getPlacement()));
        reply.initAck().setEpoch(commits_.back().epoch);
        break;
      case wire::Envelope::RELEASE:
        releases_.push_back(envelope.getRelease().getEpoch());
        reply.initAck().setEpoch(releases_.back());
        break;
      default:
        responder.reply_error(wire::ErrorCode::BAD_REQUEST, "test worker got " + message_kind_name(envelope));
        return;
    }
    responder.reply(message);
  }

  IoPool pool_{1};
  Server server_;
  std::shared_ptr<Connection> coordinator_;
  Frame register_reply_;
  uint32_t id_ = 0;
  std::atomic<bool> fail_prepare_{false};
  std::atomic<bool> stall_prepare_{false};
  std::atomic<bool> beating_{false};
  std::thread beat_thread_;
  std::mutex mutex_;
  std::vector<ToldPrepare> prepares_;
  std::vector<PlacementTable> commits_;
  std::vector<uint64_t> releases_;
  std::string token_;  // the cluster token of the last register_with, sent with heartbeats too
  const std::string control_key_ = new_control_key();
  size_t refused_control_ = 0;  // control requests without the key
};

// Waits (bounded) until `condition` holds.
template <typename F>
bool eventually(F condition, std::chrono::milliseconds timeout = 5000ms) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return condition();
}

// A client request to the coordinator; returns the reply frame (error replies included).
inline Frame ask(Connection& connection, void (*fill)(wire::Envelope::Builder)) {
  capnp::MallocMessageBuilder message;
  fill(message.initRoot<wire::Envelope>());
  return connection.request(message, 2000ms).get();
}

}  // namespace moe::test
