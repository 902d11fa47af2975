// query_status / query_placement: a private io pool and connection per query (see coordinator_queries.h).
#include "runtime/client/coordinator_queries.h"

#include <capnp/message.h>

#include "runtime/client/peer_links.h"
#include "runtime/net/io_pool.h"

namespace moe {

Frame query_coordinator(const std::string& coordinator, std::chrono::milliseconds timeout,
                        wire::Envelope::Which expected, const std::function<void(wire::Envelope::Builder)>& init,
                        std::shared_ptr<TlsContext> tls, std::string_view cluster_token) {
  IoPool pool(1, std::move(tls));
  auto connection = Connection::connect(pool.context(), coordinator, timeout);
  capnp::MallocMessageBuilder request;
  init(request.initRoot<wire::Envelope>());
  try {
    Frame reply = call_peer(*connection, request, timeout, expected, cluster_token);
    connection->close();
    return reply;
  } catch (...) {
    connection->close();
    throw;
  }
}

Frame query_status(const std::string& coordinator, std::chrono::milliseconds timeout, std::shared_ptr<TlsContext> tls,
                   std::string_view cluster_token) {
  return query_coordinator(
      coordinator, timeout, wire::Envelope::STATUS_REPLY, [](wire::Envelope::Builder e) { e.setStatus(); }, std::move(tls),
      cluster_token);
}

Frame query_placement(const std::string& coordinator, std::chrono::milliseconds timeout,
                      std::shared_ptr<TlsContext> tls, std::string_view cluster_token) {
  return query_coordinator(
      coordinator, timeout, wire::Envelope::PLACEMENT, [](wire::Envelope::Builder e) { e.setGetPlacement(); },
      std::move(tls), cluster_token);
}

}  // namespace moe
