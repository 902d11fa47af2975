// The experts this worker holds: the model they come from (learned from the coordinator once), the
// compute backend they live in, and which (layer, expert) pairs are loaded. Loading reads one expert at
// a time from the LayerSource (an HF checkpoint reads only that expert's tensors; a synthetic model
// regenerates only that expert). Thread-safe; loads and unloads are expected from one control thread,
// lookups from any.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <shared_mutex>
#include <string>
#include <vector>

#include "kernels/expert_backend.h"
#include "runtime/model/layer_source.h"

namespace moe {

class ExpertStore {
 public:
  explicit ExpertStore(std::unique_ptr<ExpertBackend> backend);

  ExpertBackend& backend() { return *backend_; }

  // Sets the model once. Setting it again with the same `source_ref` does nothing; a different one
  // throws std::runtime_error naming both.
  void set_model(std::shared_ptr<const LayerSource> source, const std::string& source_ref);
  bool has_model() const;
  // Throws RequestError(notReady) before set_model.
  std::shared_ptr<const LayerSource> model() const;

  // Throws RequestError(unknownLayer) for a layer that is not an MoE layer, RequestError(badRequest)
  // for an expert id outside 0..experts_per_layer-1, RequestError(notReady) without a model.
  void check_expert(ExpertKey key) const;

  // Loads every expert of `experts` that is not loaded yet. Checks them all first (check_expert);
  // a failing load throws RequestError(internal) naming the expert, keeping the ones loaded before.
  // Returns the experts it loaded.
  std::vector<ExpertKey> load(const std::set<ExpertKey>& experts);
  void unload(const std::set<ExpertKey>& experts);

  bool has(ExpertKey key) const;
  std::set<ExpertKey> loaded() const;
  size_t resident_bytes() const { return backend_->resident_bytes(); }

 private:
  std::unique_ptr<ExpertBackend> backend_;
  mutable std::shared_mutex mutex_;  // guards the members below
  std::shared_ptr<const LayerSource> source_;
  std::string source_ref_;
  std::set<ExpertKey> loaded_;
};

}  // namespace moe
