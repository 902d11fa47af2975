// LocalDispatcher: a MoeLayer's Dispatcher that runs every assignment on one ExpertBackend in this
// process: forward() (the backend sums), or in the deterministic mode forward_rows() and combine_rows()
// (one row per assignment, summed in a fixed order: the same bits as a deterministic cluster's).
#pragma once

#include "kernels/expert_backend.h"
#include "runtime/engine/moe_layer.h"

namespace moe {

class LocalDispatcher : public Dispatcher {
 public:
  // backend must outlive the dispatcher.
  LocalDispatcher(ExpertBackend& backend, bool deterministic) : backend_(backend), deterministic_(deterministic) {}
  Matrix dispatch(int32_t layer, const Matrix& x, const std::vector<TokenAssignment>& assignments) override;

 private:
  ExpertBackend& backend_;
  bool deterministic_ = false;
};

}  // namespace moe
