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
  explicit Client(const std::string& address) : connection_(Connection::connect(pool_.context(), address, 2000ms)) {}
  ~Client() {
    connection_->close();
    pool_.stop();
  }
  Frame get_placement() {
    return ask(*connection_, [](wire::Envelope::Builder e) { e.setGetPlacement(); });
  }
  Frame get_model() {
    return ask(*connection_, [](wire::Envelope::Builder e) { e.setGetModel(); });
  }
  Frame status() {
    return ask(*connection_, [](wire::Envelope::Builder e) { e.setStatus(); });
  }

 private:
  IoPool pool_{1};
  std::shared_ptr<Connection> connection_;
};

}  // namespace moe::test
