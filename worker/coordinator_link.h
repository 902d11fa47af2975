// The worker's side of membership: a thread that connects to the coordinator (retrying with backoff
// until it answers), learns the model (getModel, once), registers, and then heartbeats every
// heartbeatMs with the token counts of the window. When the coordinator goes away the worker keeps
// serving its last epoch and this thread keeps reconnecting; after a reconnect, or when a heartbeat
// reply says `reregister`, it registers again (its Peer fills in servingEpoch and hosted experts).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <boost/asio/io_context.hpp>

#include "runtime/net/backoff.h"
#include "runtime/net/connection.h"
#include "runtime/wire/moe.capnp.h"
#include "worker/load_window.h"

namespace moe {

struct CoordinatorLinkOptions {
  std::string coordinator;  // HOST:PORT
  std::string cluster_token;  // sent with every request (getModel, registerWorker, heartbeat) when set
  std::chrono::milliseconds connect_timeout{1000};
  std::chrono::milliseconds retry_min{100};
  std::chrono::milliseconds retry_max{2000};
  std::chrono::milliseconds request_timeout{3000};
  // Consecutive `unauthorized` refusals (a wrong cluster token) after which the link gives up: it logs one
  // line and tells the Peer (on_fatal), which stops the worker with a non-zero exit status.
  unsigned max_auth_failures = 5;
};


class CoordinatorLink {
 public:
  // What the link needs from the worker. Called on the link's thread.
  class Peer {
   public:
    virtual ~Peer() = default;
    virtual bool has_model() const = 0;
    // Throws when the model cannot be used (the link logs it and retries later).
    virtual void adopt_model(wire::ModelInfo::Reader info) = 0;
    virtual void fill_registration(wire::RegisterWorker::Builder registration) = 0;
    virtual void on_registered(wire::RegisterReply::Reader reply) = 0;
    // Everything but the window's load and the worker id.
    virtual void fill_heartbeat(wire::Heartbeat::Builder heartbeat) = 0;
    virtual void on_heartbeat_reply(wire::HeartbeatReply::Reader reply) = 0;
    // The link gave up for good (e.g. the coordinator keeps refusing the cluster token).
    virtual void on_fatal(const std::string& why) = 0;
  };

  CoordinatorLink(CoordinatorLinkOptions options, boost::asio::io_context& io, Peer& peer, LoadWindow& load);
  ~CoordinatorLink();  // stop()
  CoordinatorLink(const CoordinatorLink&) = delete;
  CoordinatorLink& operator=(const CoordinatorLink&) = delete;

  void start();
  void stop();  // idempotent; fails a request in flight at once

  bool registered() const { return registered_; }
  std::optional<uint32_t> worker_id() const;
  uint64_t registrations() const { return registrations_; }

 private:
  void run();
  // Registers, then heartbeats until the connection fails; `on_registered` runs once registration worked.
  void session(const std::shared_ptr<Connection>& connection, const std::function<void()>& on_registered);
  void register_worker(Connection& connection);
  // Sleeps up to `duration`; false when stopping.
  bool sleep_for(std::chrono::milliseconds duration);
  Frame call(Connection& connection, capnp::MallocMessageBuilder& message, wire::Envelope::Which expected);

  CoordinatorLinkOptions options_;
  boost::asio::io_context& io_;
  Peer& peer_;
  LoadWindow& load_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::shared_ptr<Connection> connection_;  // the current one, to close on stop
  std::optional<uint32_t> worker_id_;
  std::chrono::milliseconds heartbeat_interval_{500};

  std::atomic<bool> registered_{false};
  std::atomic<uint64_t> registrations_{0};
  std::thread thread_;
};

}  // namespace moe
