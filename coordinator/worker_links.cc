// WorkerLinks: connect on demand, reconnect after a close or an address change.
#include "coordinator/worker_links.h"

namespace moe {

std::shared_ptr<Connection> WorkerLinks::get(uint32_t worker_id, const std::string& address) {
  auto it = links_.find(worker_id);
  if (it != links_.end() && it->second.address == address && it->second.connection->is_open()) {
    return it->second.connection;
  }
  if (it != links_.end()) it->second.connection->close();
  auto connection = Connection::connect(io_, address, connect_timeout_);
  links_[worker_id] = {address, connection};
  return connection;
}

void WorkerLinks::drop(uint32_t worker_id) {
  auto it = links_.find(worker_id);
  if (it == links_.end()) return;
  it->second.connection->close();
  links_.erase(it);
}

void WorkerLinks::close_all() {
  for (auto& [id, link] : links_) link.connection->close();
  links_.clear();
}

}  // namespace moe
