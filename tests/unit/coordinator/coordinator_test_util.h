// Coordinator configs with test timings, and a client connection to ask it things.
#pragma once

#include <memory>
#include <string>

#include "coordinator/coordinator_config.h"
#include "coordinator/coordinator_service.h"
#include "runtime/net/connection.h"
#include "runtime/net/io_pool.h"
#include "tests/unit/coordinator/test_worker.h"

namespace moe::test {

inline CoordinatorConfig fast_config() {
  CoordinatorConfig config;
  config.listen = "127.0.0.1:0";
  config.model.synthetic = "tiny";  // 2 MoE layers x 8 experts
  config.heartbeat_ms = 50;
  config.lease_ms = 400;
  config.grace_ms = 100;
  config.rpc_timeout_ms = 2000;
  config.prepare_timeout_ms = 2000;
  return config;
}

class Client {
 public:
  // `token`: sent with every request when not empty (a coordinator with a cluster token requires it).
  explicit Client(const std::string& address, std::string token = "")
      : connection_(Connection::connect(pool_.context(), address, 2000ms)), token_(std::move(token)) {}
  ~Client() {
    connection_->close();
    pool_.stop();
  }
  Frame get_placement() {
    return request([](wire::Envelope::Builder e) { e.setGetPlacement(); });
  }
  Frame get_model() {
    return request([](wire::Envelope::Builder e) { e.setGetModel(); });
  }
  Frame status() {
    return request([](wire::Envelope::Builder e) { e.setStatus(); });
  }

 private:
  Frame request(void (*fill)(wire::Envelope::Builder)) {
    capnp::MallocMessageBuilder message;
    fill(message.initRoot<wire::Envelope>());
    set_cluster_token(message, token_);
    return connection_->request(message, 2000ms).get();
  }

  IoPool pool_{1};
  std::shared_ptr<Connection> connection_;
  std::string token_;
};

}  // namespace moe::test
