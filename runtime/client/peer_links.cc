// PeerLinks: the per-address connection cache (see peer_links.h).
#include "runtime/client/peer_links.h"

#include "runtime/wire/cluster_auth.h"

#include "runtime/net/net_error.h"
#include "runtime/wire/envelope_util.h"

namespace moe {

PeerLinks::PeerLinks(IoPool& pool, std::chrono::milliseconds connect_timeout, FrameLimits limits, DataLinkOptions data)
    : pool_(pool), connect_timeout_(connect_timeout), limits_(limits), data_(std::move(data)) {}

PeerLinks::~PeerLinks() { close_all(); }

std::shared_ptr<PeerLinks::Slot> PeerLinks::slot(const std::string& address) {
  std::lock_guard lock(mutex_);
  auto& s = slots_[address];
  if (!s) s = std::make_shared<Slot>();
  return s;
}

std::shared_ptr<Connection> PeerLinks::get(const std::string& address) {
  auto s = slot(address);
  std::lock_guard lock(s->connect_mutex);
  if (s->connection && s->connection->is_open()) return s->connection;
  if (s->connection) s->connection->close();
  s->connection = nullptr;
  s->connection = connect_data_link(pool_.context(), address, connect_timeout_, limits_, data_);
  return s->connection;
}

void PeerLinks::drop(const std::string& address) {
  std::shared_ptr<Slot> s;
  {
    std::lock_guard lock(mutex_);
    auto it = slots_.find(address);
    if (it == slots_.end()) return;
    s = it->second;
  }
  std::lock_guard lock(s->connect_mutex);
  if (s->connection) s->connection->close();
  s->connection = nullptr;
}

void PeerLinks::close_all() {
  std::map<std::string, std::shared_ptr<Slot>> slots;
  {
    std::lock_guard lock(mutex_);
    slots.swap(slots_);
  }
  for (auto& [address, s] : slots) {
    std::lock_guard lock(s->connect_mutex);
    if (s->connection) s->connection->close();
    s->connection = nullptr;
  }
}

Frame call_peer(Connection& connection, capnp::MessageBuilder& request, std::chrono::milliseconds timeout,
                wire::Envelope::Which expected, std::string_view cluster_token) {
  set_cluster_token(request, cluster_token);
  Frame reply = connection.request(request, timeout).get();
  expect_kind(reply.envelope(), expected);
  return reply;
}

}  // namespace moe
