// What a worker can tell a client while the coordinator is away: the modelInfo it adopted from the
// coordinator and the last placement it committed. A client that cannot reach the coordinator asks
// workers for getModel / getPlacement and gets these copies (notReady until the worker has them).
// Thread-safe: io threads reply while the control thread records commits.
#pragma once

#include <capnp/message.h>

#include <memory>
#include <mutex>

#include "runtime/net/connection.h"
#include "runtime/wire/moe.capnp.h"

namespace moe {

class AdoptedMetadata {
 public:
  void set_model(wire::ModelInfo::Reader info);
  // Keeps `placement` unless a placement of a higher epoch is already kept.
  void set_placement(wire::Placement::Reader placement);

  // modelInfo / placement replies; notReady naming what is missing when the worker has none yet.
  void reply_model(const Responder& responder, uint64_t current_epoch) const;
  void reply_placement(const Responder& responder, uint64_t current_epoch) const;

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<capnp::MallocMessageBuilder> model_;      // root: ModelInfo
  std::shared_ptr<capnp::MallocMessageBuilder> placement_;  // root: Placement
};

}  // namespace moe
