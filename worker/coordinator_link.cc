// Connect / getModel / register / heartbeat loop (see coordinator_link.h).
#include "worker/coordinator_link.h"

#include <capnp/message.h>

#include <algorithm>

#include "runtime/wire/cluster_auth.h"
#include "runtime/wire/envelope_util.h"
#include "runtime/wire/wire_error.h"
#include "worker/worker_log.h"

namespace moe {

CoordinatorLink::CoordinatorLink(CoordinatorLinkOptions options, boost::asio::io_context& io, Peer& peer,
                                 LoadWindow& load)
    : options_(std::move(options)), io_(io), peer_(peer), load_(load) {}

CoordinatorLink::~CoordinatorLink() { stop(); }

void CoordinatorLink::start() { thread_ = std::thread([this] { run(); }); }

void CoordinatorLink::stop() {
  std::shared_ptr<Connection> connection;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    connection = connection_;
  }
  wake_.notify_all();
  if (connection) connection->close();
  if (thread_.joinable()) thread_.join();
}

std::optional<uint32_t> CoordinatorLink::worker_id() const {
  std::lock_guard lock(mutex_);
  return worker_id_;
}

bool CoordinatorLink::sleep_for(std::chrono::milliseconds duration) {
  std::unique_lock lock(mutex_);
  return !wake_.wait_for(lock, duration, [&] { return stopping_; });
}

Frame CoordinatorLink::call(Connection& connection, capnp::MallocMessageBuilder& message,
                            wire::Envelope::Which expected) {
  set_cluster_token(message, options_.cluster_token);
  Frame reply = connection.request(message, options_.request_timeout).get();
  expect_kind(reply.envelope(), expected);
  return reply;
}

void CoordinatorLink::run() {
  auto backoff = options_.retry_min;
  bool logged_unreachable = false;
  unsigned auth_failures = 0;
  for (;;) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
    }
    std::shared_ptr<Connection> connection;
    try {
      connection = Connection::connect(io_, options_.coordinator, options_.connect_timeout);
      {
        std::lock_guard lock(mutex_);
        if (stopping_) {
          connection->close();
          return;
        }
        connection_ = connection;
      }
      worker_log("connected to coordinator " + options_.coordinator);
      logged_unreachable = false;
      session(connection, [&] { backoff = options_.retry_min; auth_failures = 0; });
    } catch (const std::exception& e) {
      registered_ = false;
      {
        std::lock_guard lock(mutex_);
        if (stopping_) return;
      }
      const auto* remote = dynamic_cast<const RemoteError*>(&e);
      if (remote && remote->code() == wire::ErrorCode::UNAUTHORIZED) {
        if (++auth_failures >= options_.max_auth_failures) {
          if (connection) connection->close();
          peer_.on_fatal("coordinator " + options_.coordinator + " refused this worker " + std::to_string(auth_failures) +
                         " times in a row: " + remote->remote_message() + " (check --cluster-token)");
          return;
        }
      } else {
        auth_failures = 0;
      }
      if (!logged_unreachable || backoff >= options_.retry_max) {
        worker_log("coordinator " + options_.coordinator + ": " + e.what() + "; still serving the last epoch, retrying in " +
                   std::to_string(backoff.count()) + " ms");
        logged_unreachable = true;
      }
    }
    if (connection) connection->close();
    {
      std::lock_guard lock(mutex_);
      connection_.reset();
    }
    if (!sleep_for(jittered(backoff))) return;
    backoff = std::min(backoff * 2, options_.retry_max);
  }
}

void CoordinatorLink::session(const std::shared_ptr<Connection>& connection, const std::function<void()>& on_registered) {
  if (!peer_.has_model()) {
    capnp::MallocMessageBuilder message;
    message.initRoot<wire::Envelope>().setGetModel();
    Frame reply = call(*connection, message, wire::Envelope::MODEL_INFO);
    peer_.adopt_model(reply.envelope().getModelInfo());
  }
  register_worker(*connection);
  on_registered();  // the backoff restarts only after a registration got through
  for (;;) {
    std::chrono::milliseconds interval;
    {
      std::lock_guard lock(mutex_);
      interval = heartbeat_interval_;
    }
    if (!sleep_for(interval)) return;
    if (!connection->is_open()) throw std::runtime_error("connection closed");

    LoadSnapshot window = load_.take();
    capnp::MallocMessageBuilder message;
    auto heartbeat = message.initRoot<wire::Envelope>().initHeartbeat();
    heartbeat.setWorkerId(worker_id().value_or(0));
    heartbeat.setWindowMs(static_cast<uint32_t>(window.window.count()));
    peer_.fill_heartbeat(heartbeat);
    auto load = heartbeat.initLoad(static_cast<unsigned>(window.tokens.size()));
    unsigned i = 0;
    for (const auto& [key, tokens] : window.tokens) {
      load[i].setLayer(key.layer);
      load[i].setExpert(key.expert);
      load[i].setTokens(tokens);
      ++i;
    }
    Frame reply;
    try {
      reply = call(*connection, message, wire::Envelope::HEARTBEAT_REPLY);
    } catch (...) {
      load_.restore(window);
      throw;
    }
    auto heartbeat_reply = reply.envelope().getHeartbeatReply();
    peer_.on_heartbeat_reply(heartbeat_reply);
    if (heartbeat_reply.getReregister()) {
      worker_log("coordinator does not know this worker any more: registering again");
      register_worker(*connection);
    }
  }
}

void CoordinatorLink::register_worker(Connection& connection) {
  capnp::MallocMessageBuilder message;
  auto registration = message.initRoot<wire::Envelope>().initRegisterWorker();
  peer_.fill_registration(registration);
  Frame reply = call(connection, message, wire::Envelope::REGISTER_REPLY);
  auto registered = reply.envelope().getRegisterReply();
  {
    std::lock_guard lock(mutex_);
    worker_id_ = registered.getWorkerId();
    uint32_t ms = registered.getHeartbeatMs();
    heartbeat_interval_ = std::chrono::milliseconds(ms > 0 ? ms : 500);
  }
  peer_.on_registered(registered);
  registered_ = true;
  ++registrations_;
  worker_log("registered with coordinator " + options_.coordinator + " as worker " +
             std::to_string(registered.getWorkerId()) + " (lease " + std::to_string(registered.getLeaseMs()) +
             " ms, heartbeat " + std::to_string(registered.getHeartbeatMs()) + " ms, coordinator epoch " +
             std::to_string(registered.getCurrentEpoch()) + ")");
}

}  // namespace moe
