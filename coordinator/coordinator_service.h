// The moe-coordinator service: membership (registration, heartbeats, leases, registration-connection
// close), placement (first placement once --min-workers registered, reassignment of dead workers'
// experts), the change protocol (prepare gainers -> commit to all -> grace -> release), the state file,
// /metrics, and the requests workers, clients and moectl send (registerWorker, heartbeat, getModel,
// getPlacement, status). Everything runs on its own threads; the constructor returns once it serves.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <prometheus/registry.h>

#include "coordinator/coordinator_config.h"
#include "runtime/placement/placement_table.h"

namespace moe {

class CoordinatorService {
 public:
  // Loads the model and the state file, binds --listen and --metrics-port, and starts serving.
  // Throws ModelError / NetError / std::runtime_error (state file) naming what failed.
  explicit CoordinatorService(CoordinatorConfig config);
  ~CoordinatorService();  // stop()
  CoordinatorService(const CoordinatorService&) = delete;
  CoordinatorService& operator=(const CoordinatorService&) = delete;

  std::string address() const;  // "host:port" with the bound port
  uint16_t port() const;
  uint16_t metrics_port() const;  // 0 when disabled
  prometheus::Registry& metrics_registry();
  uint64_t epoch() const;         // the committed epoch (0 before the first placement)
  // Rounds the control thread has finished (lease checks, planning, release, rebalance): a test waits for
  // one that began after an event instead of sleeping.
  uint64_t control_rounds() const;
  PlacementTable placement() const;

  // Stops serving and joins the threads. Idempotent.
  void stop();

  struct Core;

 private:
  std::shared_ptr<Core> core_;
};

}  // namespace moe
