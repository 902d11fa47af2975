// Waiting until a cluster serves: polls the coordinator's placement until an epoch is committed with
// enough workers active. Used for clusters this process started (LocalCluster) and for ones it only
// connects to (moectl demo --cluster).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "runtime/net/tls_context.h"

namespace moe {

// Returns the epoch once placement epoch >= 1 and at least `min_active` workers are ACTIVE.
// `check_alive` runs before every poll and may throw to give up early (e.g. a child process died).
// Throws std::runtime_error "cluster at ADDR not ready after N ms: <what was last seen>" on timeout, and at
// once when the coordinator refuses the query as unauthorized (a wrong or missing cluster token).
// `cluster_token` goes with every query when not empty.
uint64_t wait_for_active_workers(const std::string& coordinator, size_t min_active, std::chrono::milliseconds timeout,
                                 const std::function<void()>& check_alive = {},
                                 std::shared_ptr<TlsContext> tls = nullptr, const std::string& cluster_token = {});

}  // namespace moe
