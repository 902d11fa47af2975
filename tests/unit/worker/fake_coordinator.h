// A small real coordinator-side peer for the worker tests, on runtime/net's Server: answers getModel
// (the spec and source of a synthetic model), registerWorker and heartbeat, and records what the worker
// sent. Not the real moe-coordinator: it never places experts; the tests do that themselves by sending
// prepare / commit / release to the worker.
#pragma once

#include <capnp/message.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "runtime/model/layer_source_factory.h"
#include "runtime/model/model_spec.h"
#include "runtime/net/server.h"
#include "runtime/wire/envelope_util.h"

namespace moe::test {

struct Registration {
  std::string name, address, backend, cluster_token;  // cluster_token: the envelope's
  std::string control_key;  // what the worker asks prepare, commit and release to bring back
  uint64_t memory_bytes = 0;
  uint32_t slots = 0;
  uint64_t serving_epoch = 0;
  std::set<ExpertKey> hosted;
};

class FakeCoordinator {
 public:
  static constexpr uint32_t kWorkerId = 7;

  FakeCoordinator(boost::asio::io_context& io, const std::string& source, uint16_t port = 0,
                  uint32_t heartbeat_ms = 40)
      : source_(source), spec_(open_layer_source(ModelRef::parse(source))->spec()), heartbeat_ms_(heartbeat_ms) {
    server_ = std::make_unique<Server>(io, "127.0.0.1", port,
                                       [this](Frame request, Responder responder) { handle(request, responder); });
  }
  ~FakeCoordinator() { server_->stop(); }

  std::string address() const { return server_->address(); }
  uint16_t port() const { return server_->port(); }
  const ModelSpec& spec() const { return spec_; }
  void stop() { server_->stop(); }

  // The next heartbeat reply says reregister.
  void ask_reregister() { reregister_next_ = true; }

  std::vector<Registration> registrations() const {
    std::lock_guard lock(mutex_);
    return registrations_;
  }
  size_t heartbeats() const {
    std::lock_guard lock(mutex_);
    return heartbeats_;
  }
  // Tokens per expert summed over every heartbeat so far.
  std::map<ExpertKey, uint64_t> reported_tokens() const {
    std::lock_guard lock(mutex_);
    return tokens_;
  }
  uint64_t last_heartbeat_epoch() const {
    std::lock_guard lock(mutex_);
    return last_epoch_;
  }

  // Polls (bounded) until `condition` holds; the condition may call the accessors above.
  template <typename F>
  static bool wait_for(F condition, std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (condition()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return condition();
  }
  bool wait_registrations(size_t count) const {
    return wait_for([&] { return registrations().size() >= count; });
  }
  bool wait_heartbeats(size_t count) const {
    return wait_for([&] { return heartbeats() >= count; });
  }

 private:
  void handle(const Frame& request, const Responder& responder) {
    auto envelope = request.envelope();
    capnp::MallocMessageBuilder message;
    auto reply = message.initRoot<wire::Envelope>();
    switch (envelope.which()) {
      case wire::Envelope::GET_MODEL: {
        auto info = reply.initModelInfo();
        info.setSpecJson(model_spec_to_config(spec_).dump());
        info.setName("test-model");
        info.setSource(source_);
        break;
      }
      case wire::Envelope::REGISTER_WORKER: {
        auto r = envelope.getRegisterWorker();
        Registration seen{r.getName(), r.getAddress(), r.getBackend(), envelope.getClusterToken(),
                          std::string(reinterpret_cast<const char*>(r.getControlKey().begin()), r.getControlKey().size()),
                          r.getCapacity().getMemoryBytes(), r.getCapacity().getExpertSlots(), r.getServingEpoch(), {}};
        for (auto ref : r.getHosted()) seen.hosted.insert({ref.getLayer(), ref.getExpert()});
        auto out = reply.initRegisterReply();
        out.setWorkerId(kWorkerId);
        out.setLeaseMs(3000);
        out.setHeartbeatMs(heartbeat_ms_);
        std::lock_guard lock(mutex_);
        registrations_.push_back(seen);
        break;
      }
      case wire::Envelope::HEARTBEAT: {
        auto h = envelope.getHeartbeat();
        auto out = reply.initHeartbeatReply();
        out.setLeaseMs(3000);
        out.setReregister(reregister_next_.exchange(false));
        std::lock_guard lock(mutex_);
        ++heartbeats_;
        last_epoch_ = h.getEpoch();
        for (auto load : h.getLoad()) tokens_[{load.getLayer(), load.getExpert()}] += load.getTokens();
        break;
      }
      default:
        responder.reply_error(wire::ErrorCode::BAD_REQUEST, "fake coordinator: unexpected " + message_kind_name(envelope));
        return;
    }
    responder.reply(message);
  }

  std::string source_;
  ModelSpec spec_;
  uint32_t heartbeat_ms_;
  std::atomic<bool> reregister_next_{false};
  mutable std::mutex mutex_;
  std::vector<Registration> registrations_;
  size_t heartbeats_ = 0;
  uint64_t last_epoch_ = 0;
  std::map<ExpertKey, uint64_t> tokens_;
  std::unique_ptr<Server> server_;
};

}  // namespace moe::test
