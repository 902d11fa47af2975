// One-off requests to a coordinator for tools (moectl status, readiness checks of a launched cluster):
// each opens its own connection, asks, and closes. A ClusterClient keeps its own cached connection.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "runtime/net/tls_context.h"
#include "runtime/wire/framing.h"
#include "runtime/wire/moe.capnp.h"

namespace moe {

// Sends one request (filled in by `fill`) on a fresh connection (mutual TLS when `tls` is set) and returns
// the reply of kind `expected`. Throws like the queries below. `cluster_token` goes with the request when
// not empty (a coordinator with a token requires it).
Frame query_coordinator(const std::string& coordinator, std::chrono::milliseconds timeout,
                        wire::Envelope::Which expected, const std::function<void(wire::Envelope::Builder)>& fill,
                        std::shared_ptr<TlsContext> tls = nullptr, std::string_view cluster_token = {});

// Replies `status` -> statusReply, `getPlacement` -> placement. Throw NetError when the coordinator is
// unreachable or silent past `timeout`, RemoteError on an error reply, WireError on another reply kind.
Frame query_status(const std::string& coordinator, std::chrono::milliseconds timeout,
                   std::shared_ptr<TlsContext> tls = nullptr, std::string_view cluster_token = {});
Frame query_placement(const std::string& coordinator, std::chrono::milliseconds timeout,
                      std::shared_ptr<TlsContext> tls = nullptr, std::string_view cluster_token = {});

}  // namespace moe
