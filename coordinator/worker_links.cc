// WorkerLinks: connect on demand, reconnect after a close or an address change.
#include "coordinator/worker_links.h"

#include "runtime/net/net_error.h"

namespace moe {

std::shared_ptr<Connection> WorkerLinks::get(uint32_t worker_id, const std::string& address) {
  {
    std::lock_guard lock(mutex_);
    if (closed_) throw std::runtime_error("the coordinator is stopping: no new connection to " + address);
    auto it = links_.find(worker_id);
    if (it != links_.end() && it->second.address == address && it->second.connection->is_open()) {
      return it->second.connection;
    }
  }
  auto connection = Connection::connect(io_, address, connect_timeout_);  // without the lock: it blocks
  std::shared_ptr<Connection> old;
  {
    std::lock_guard lock(mutex_);
    if (closed_) {
      connection->close();
      throw std::runtime_error("the coordinator is stopping: no new connection to " + address);
    }
    auto it = links_.find(worker_id);
    if (it != links_.end()) old = it->second.connection;
    links_[worker_id] = {address, connection};
  }
  if (old) old->close();
  return connection;
}

void WorkerLinks::drop(uint32_t worker_id) {
  std::shared_ptr<Connection> connection;
  {
    std::lock_guard lock(mutex_);
    auto it = links_.find(worker_id);
    if (it == links_.end()) return;
    connection = it->second.connection;
    links_.erase(it);
  }
  connection->close();
}

void WorkerLinks::close_all() {
  std::map<uint32_t, Link> links;
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
    links.swap(links_);
  }
  for (auto& [id, link] : links) link.connection->close();
}

}  // namespace moe
