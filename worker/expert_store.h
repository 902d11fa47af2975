// The experts this worker holds: the model they come from (learned from the coordinator once), the
// compute backend they live in, and which (layer, expert) pairs are loaded. Loading reads one expert at
// a time from the LayerSource (an HF checkpoint reads only that expert's tensors; a synthetic model
// regenerates only that expert). Thread-safe; loads and unloads are expected from one control thread,
// lookups from any. With `retain_weights` (--no-shared-storage) it also keeps each loaded expert's
// weights as loaded (the checkpoint's dtype; f16 kept as f32) so peers can stream them from it
// (worker/expert_serve.h); they cost that memory on top of the backend's copy.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <vector>

#include "kernels/expert_backend.h"
#include "runtime/model/layer_source.h"

namespace moe {

class ExpertStore {
 public:
  explicit ExpertStore(std::unique_ptr<ExpertBackend> backend, bool retain_weights = false);

  ExpertBackend& backend() { return *backend_; }

  // Sets the model once. Setting it again with the same `source_ref` does nothing; a different one
  // throws std::runtime_error naming both.
  void set_model(std::shared_ptr<const LayerSource> source, const std::string& source_ref);
  bool has_model() const;
  // Throws ServiceError(notReady) before set_model.
  std::shared_ptr<const LayerSource> model() const;

  // Throws ServiceError(unknownLayer) for a layer that is not an MoE layer, ServiceError(badRequest)
  // for an expert id outside 0..experts_per_layer-1, ServiceError(notReady) without a model.
  void check_expert(ExpertKey key) const;

  // Loads every expert of `experts` that is not loaded yet. Checks them all first (check_expert);
  // a failing load throws ServiceError(internal) naming the expert, keeping the ones loaded before.
  // Returns the experts it loaded.
  std::vector<ExpertKey> load(const std::set<ExpertKey>& experts);
  // Loads one expert from weights got elsewhere (a peer); checks the key (check_expert) and, like
  // load, throws ServiceError(internal) when the backend refuses them. Does nothing when loaded.
  void load_weights(ExpertKey key, ExpertWeights weights);
  void unload(const std::set<ExpertKey>& experts);

  bool retains_weights() const { return retain_weights_; }
  // The retained weights of a loaded expert; nullopt when not loaded or not retaining.
  std::optional<ExpertWeights> retained(ExpertKey key) const;

  bool has(ExpertKey key) const;
  std::set<ExpertKey> loaded() const;
  size_t resident_bytes() const { return backend_->resident_bytes(); }

 private:
  void mark_loaded(ExpertKey key, ExpertWeights weights);

  std::unique_ptr<ExpertBackend> backend_;
  const bool retain_weights_;
  mutable std::shared_mutex mutex_;  // guards the members below
  std::shared_ptr<const LayerSource> source_;
  std::string source_ref_;
  std::set<ExpertKey> loaded_;
  std::map<ExpertKey, ExpertWeights> retained_;  // retain_weights_ only
};

}  // namespace moe
