// The experts this worker holds: the model they come from (learned from the coordinator once), the
// compute backend they live in, and which (layer, expert) pairs are loaded in which weight version.
// Loading reads one expert at a time from the version's LayerSource (an HF checkpoint reads only that
// expert's tensors; a synthetic model regenerates only that expert). Thread-safe; loads and unloads are
// expected from one control thread, lookups from any. With `retain_weights` (--no-shared-storage) it also
// keeps each loaded expert's weights as loaded (the checkpoint's dtype; f16 kept as f32) so peers can
// stream them from it (worker/expert_serve.h); they cost that memory on top of the backend's copy.
//
// Weight versions (moectl update-weights, worker/weight_version.h): at most two at a time, one per slot.
// Every version has a source ("hf:DIR", opened when something loads from it: a worker that only streams
// a version from peers never opens it). The spec (shapes) is the first model's: every version has it.
#pragma once

#include <array>
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

  // Sets the model once, as weight version `version`. Setting it again with the same `source_ref` does
  // nothing; a different one throws std::runtime_error naming both.
  void set_model(std::shared_ptr<const LayerSource> source, const std::string& source_ref, uint64_t version = 1);
  bool has_model() const;
  // Throws ServiceError(notReady) before set_model. The first model's source: its spec is every version's.
  std::shared_ptr<const LayerSource> model() const;

  // Makes `version` (weights at `source_ref`) known, in its slot. Nothing when the slot holds it already
  // with the same source. A slot holding another version (or the same one from another source: a failed
  // update's leftovers) is emptied first, unless that version is `serving` (ServiceError(internal)).
  void add_version(uint64_t version, const std::string& source_ref, uint64_t serving);
  bool holds_version(uint64_t version) const;
  // The source `version` loads from ("" when the version is not known here).
  std::string source_ref(uint64_t version) const;
  // The versions known, ascending.
  std::vector<uint64_t> versions() const;
  // Forgets every version not in `keep` whose experts are all unloaded.
  void drop_versions_except(const std::set<uint64_t>& keep);

  // Throws ServiceError(unknownLayer) for a layer that is not an MoE layer, ServiceError(badRequest)
  // for an expert id outside 0..experts_per_layer-1, ServiceError(notReady) without a model.
  void check_expert(ExpertKey key) const;

  // Loads every expert of `experts` that is not loaded yet in `version` (known: add_version), from that
  // version's source. Checks them all first (check_expert); a failing load throws ServiceError(internal)
  // naming the expert, keeping the ones loaded before. Returns the experts it loaded.
  std::vector<ExpertKey> load(const std::set<ExpertKey>& experts, uint64_t version);
  // Loads one expert of `version` from weights got elsewhere (a peer); checks the key (check_expert) and,
  // like load, throws ServiceError(internal) when the backend refuses them. Does nothing when loaded.
  void load_weights(ExpertKey key, uint64_t version, ExpertWeights weights);
  // Unloads backend keys (worker/weight_version.h), as EpochState::release returns them.
  void unload(const std::set<ExpertKey>& backend_keys);

  bool retains_weights() const { return retain_weights_; }
  // The retained weights of a loaded expert of `version`; nullopt when not loaded or not retaining.
  std::optional<ExpertWeights> retained(ExpertKey key, uint64_t version) const;

  bool has(ExpertKey key, uint64_t version) const;
  // Loaded backend keys (every version).
  std::set<ExpertKey> loaded() const;
  // Loaded experts of `version`, as model keys.
  std::set<ExpertKey> loaded_in(uint64_t version) const;
  size_t resident_bytes() const { return backend_->resident_bytes(); }

 private:
  struct Version {
    uint64_t number = 0;  // 0: the slot is free
    std::string ref;
    std::shared_ptr<const LayerSource> source;  // opened on the first load from it
  };
  // The version's source, opened now if needed; throws ServiceError(internal) naming it.
  std::shared_ptr<const LayerSource> source_of(uint64_t version);
  // Checks under the lock that the slot holds `version`.
  bool slot_holds_locked(uint64_t version) const;
  void mark_loaded(ExpertKey backend, ExpertWeights weights);

  std::unique_ptr<ExpertBackend> backend_;
  const bool retain_weights_;
  mutable std::shared_mutex mutex_;  // guards the members below
  std::shared_ptr<const LayerSource> source_;
  std::string source_ref_;
  std::array<Version, 2> slots_;
  std::set<ExpertKey> loaded_;                   // backend keys
  std::map<ExpertKey, ExpertWeights> retained_;  // backend keys; retain_weights_ only
};

}  // namespace moe
