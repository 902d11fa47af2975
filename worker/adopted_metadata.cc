// AdoptedMetadata: copies of the coordinator's modelInfo and the last committed placement (see
// adopted_metadata.h).
#include "worker/adopted_metadata.h"

namespace moe {

void AdoptedMetadata::set_model(wire::ModelInfo::Reader info) {
  auto copy = std::make_shared<capnp::MallocMessageBuilder>();
  copy->setRoot(info);
  std::lock_guard lock(mutex_);
  model_ = std::move(copy);
}

void AdoptedMetadata::set_placement(wire::Placement::Reader placement) {
  auto copy = std::make_shared<capnp::MallocMessageBuilder>();
  copy->setRoot(placement);
  std::lock_guard lock(mutex_);
  if (placement_ && placement_->getRoot<wire::Placement>().getEpoch() > placement.getEpoch()) return;
  placement_ = std::move(copy);
}

void AdoptedMetadata::reply_model(const Responder& responder, uint64_t current_epoch) const {
  std::shared_ptr<capnp::MallocMessageBuilder> model;
  {
    std::lock_guard lock(mutex_);
    model = model_;
  }
  if (!model) {
    responder.reply_error(wire::ErrorCode::NOT_READY, "this worker has no model yet (the coordinator gives it)",
                          current_epoch);
    return;
  }
  capnp::MallocMessageBuilder message;
  message.initRoot<wire::Envelope>().setModelInfo(model->getRoot<wire::ModelInfo>().asReader());
  responder.reply(message);
}

void AdoptedMetadata::reply_placement(const Responder& responder, uint64_t current_epoch) const {
  std::shared_ptr<capnp::MallocMessageBuilder> placement;
  {
    std::lock_guard lock(mutex_);
    placement = placement_;
  }
  if (!placement) {
    responder.reply_error(wire::ErrorCode::NOT_READY, "this worker has committed no placement yet", current_epoch);
    return;
  }
  capnp::MallocMessageBuilder message;
  message.initRoot<wire::Envelope>().setPlacement(placement->getRoot<wire::Placement>().asReader());
  responder.reply(message);
}

}  // namespace moe
