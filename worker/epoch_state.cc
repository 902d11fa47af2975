// Epoch bookkeeping of the placement change protocol (see epoch_state.h).
#include "worker/epoch_state.h"

#include <string>

#include "runtime/wire/service_error.h"

namespace moe {

void EpochState::check_request_epoch(uint64_t epoch) const {
  if (epoch < oldest_) {
    throw ServiceError(wire::ErrorCode::STALE_EPOCH,
                       "request planned on epoch " + std::to_string(epoch) + ", this worker serves epochs >= " +
                           std::to_string(oldest_) + " (current " + std::to_string(current_) + ")",
                       current_);
  }
}

void EpochState::prepare(uint64_t epoch, const std::set<ExpertKey>& experts) {
  if (epoch < current_) {
    throw ServiceError(wire::ErrorCode::STALE_EPOCH,
                       "prepare for epoch " + std::to_string(epoch) + ", but epoch " + std::to_string(current_) +
                           " is already committed",
                       current_);
  }
  prepared_[epoch].insert(experts.begin(), experts.end());
}

void EpochState::commit(uint64_t epoch, const std::set<ExpertKey>& experts) {
  if (epoch < current_) {
    throw ServiceError(wire::ErrorCode::STALE_EPOCH,
                       "commit of epoch " + std::to_string(epoch) + ", but epoch " + std::to_string(current_) +
                           " is already committed",
                       current_);
  }
  if (current_ == 0) oldest_ = epoch;  // nothing served before: no grace
  current_ = epoch;
  assigned_[epoch] = experts;
  prepared_.erase(prepared_.begin(), prepared_.upper_bound(epoch));
}

std::set<ExpertKey> EpochState::release(uint64_t epoch, const std::set<ExpertKey>& loaded, bool drop_prepared) {
  if (epoch > current_) {
    throw ServiceError(wire::ErrorCode::BAD_REQUEST,
                       "release of epoch " + std::to_string(epoch) + ", but this worker's current epoch is " +
                           std::to_string(current_),
                       current_);
  }
  if (epoch > oldest_) oldest_ = epoch;
  assigned_.erase(assigned_.begin(), assigned_.lower_bound(oldest_));
  if (drop_prepared) prepared_.clear();  // a change that failed: what its prepare loaded goes too
  std::set<ExpertKey> keep = needed();
  std::set<ExpertKey> unload;
  for (const ExpertKey& key : loaded) {
    if (!keep.count(key)) unload.insert(key);
  }
  return unload;
}

std::set<ExpertKey> EpochState::needed() const {
  std::set<ExpertKey> all;
  for (const auto& [epoch, experts] : assigned_) all.insert(experts.begin(), experts.end());
  for (const auto& [epoch, experts] : prepared_) all.insert(experts.begin(), experts.end());
  return all;
}

}  // namespace moe
