// Polling a coordinator until its cluster serves (see cluster_readiness.h).
#include "runtime/client/cluster_readiness.h"

#include <stdexcept>
#include <thread>

#include "runtime/client/client_placement.h"
#include "runtime/client/coordinator_queries.h"
#include "runtime/wire/wire_error.h"

namespace moe {

uint64_t wait_for_active_workers(const std::string& coordinator, size_t min_active, std::chrono::milliseconds timeout,
                                 const std::function<void()>& check_alive, std::shared_ptr<TlsContext> tls,
                                 const std::string& cluster_token) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string seen = "no reply from the coordinator at " + coordinator;
  while (true) {
    if (check_alive) check_alive();
    try {
      Frame reply = query_placement(coordinator, std::chrono::milliseconds(1000), tls, cluster_token);
      ClientPlacement placement(reply.envelope().getPlacement());
      size_t active = 0;
      for (const auto& w : placement.workers()) active += w.state == WorkerState::Active;
      seen = "epoch " + std::to_string(placement.epoch()) + ", " + std::to_string(active) + " of " +
             std::to_string(min_active) + " workers active";
      if (placement.epoch() >= 1 && active >= min_active) return placement.epoch();
    } catch (const RemoteError& e) {
      if (e.code() == wire::ErrorCode::UNAUTHORIZED) {  // waiting cannot help: say so at once
        throw std::runtime_error("cluster at " + coordinator + " refused the readiness query: " +
                                 e.remote_message() + " (give the cluster's token: --cluster-token or --cluster-token-file)");
      }
      seen = e.what();
    } catch (const std::exception& e) {
      seen = e.what();
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      throw std::runtime_error("cluster at " + coordinator + " not ready after " + std::to_string(timeout.count()) +
                               " ms: " + seen);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace moe
