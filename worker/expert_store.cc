// Expert loading and bookkeeping (see expert_store.h).
#include "worker/expert_store.h"

#include <algorithm>
#include <mutex>
#include <stdexcept>

#include "runtime/model/layer_source_factory.h"
#include "worker/expert_copy.h"
#include "worker/weight_version.h"
#include "runtime/wire/service_error.h"

namespace moe {

namespace {
std::string expert_name(ExpertKey key) {
  return "expert " + std::to_string(key.expert) + " of layer " + std::to_string(key.layer);
}

std::string moe_layer_list(const ModelSpec& spec) {
  std::string list;
  for (int32_t layer : spec.moe_layers) list += (list.empty() ? "" : ",") + std::to_string(layer);
  return list;
}
}  // namespace

ExpertStore::ExpertStore(std::unique_ptr<ExpertBackend> backend, bool retain_weights)
    : backend_(std::move(backend)), retain_weights_(retain_weights) {
  if (!backend_) throw std::invalid_argument("ExpertStore needs a backend, got none");
}

void ExpertStore::set_model(std::shared_ptr<const LayerSource> source, const std::string& source_ref, uint64_t version) {
  std::unique_lock lock(mutex_);
  if (source_) {
    if (source_ref == source_ref_) return;
    throw std::runtime_error("the coordinator now serves model '" + source_ref + "', this worker loaded '" +
                             source_ref_ + "': restart the worker to change models");
  }
  if (version == 0) version = 1;
  source_ = source;
  source_ref_ = source_ref;
  slots_[version_slot(version)] = Version{version, source_ref, std::move(source)};
}

bool ExpertStore::has_model() const {
  std::shared_lock lock(mutex_);
  return source_ != nullptr;
}

std::shared_ptr<const LayerSource> ExpertStore::model() const {
  std::shared_lock lock(mutex_);
  if (!source_) throw ServiceError(wire::ErrorCode::NOT_READY, "this worker has not learned the model from the coordinator yet");
  return source_;
}

void ExpertStore::add_version(uint64_t version, const std::string& source_ref, uint64_t serving) {
  if (version == 0) throw ServiceError(wire::ErrorCode::BAD_REQUEST, "weight version 0 does not exist (versions start at 1)");
  const int32_t slot = version_slot(version);
  std::set<ExpertKey> leftovers;
  {
    std::unique_lock lock(mutex_);
    Version& held = slots_[slot];
    if (held.number == version && (held.ref == source_ref || source_ref.empty())) return;
    if (held.number != 0 && held.number == serving) {
      throw ServiceError(wire::ErrorCode::INTERNAL,
                         "weight version " + std::to_string(version) + " (" + source_ref + ") cannot be loaded: its slot " +
                             "holds version " + std::to_string(held.number) + " (" + held.ref + "), which this worker serves");
    }
    if (source_ref.empty()) {
      throw ServiceError(wire::ErrorCode::BAD_REQUEST,
                         "weight version " + std::to_string(version) + " is new to this worker and the request names no source");
    }
    for (const ExpertKey& key : loaded_) {
      if (key_slot(key) == slot) leftovers.insert(key);
    }
    held = Version{version, source_ref, nullptr};
  }
  unload(leftovers);  // a failed or superseded version's experts
}

bool ExpertStore::holds_version(uint64_t version) const {
  std::shared_lock lock(mutex_);
  return slot_holds_locked(version);
}

bool ExpertStore::slot_holds_locked(uint64_t version) const {
  return version != 0 && slots_[version_slot(version)].number == version;
}

std::string ExpertStore::source_ref(uint64_t version) const {
  std::shared_lock lock(mutex_);
  return slot_holds_locked(version) ? slots_[version_slot(version)].ref : std::string();
}

std::vector<uint64_t> ExpertStore::versions() const {
  std::shared_lock lock(mutex_);
  std::vector<uint64_t> out;
  for (const Version& v : slots_) {
    if (v.number) out.push_back(v.number);
  }
  std::sort(out.begin(), out.end());
  return out;
}

void ExpertStore::drop_versions_except(const std::set<uint64_t>& keep) {
  std::unique_lock lock(mutex_);
  for (int32_t slot = 0; slot < 2; ++slot) {
    Version& v = slots_[slot];
    if (v.number == 0 || keep.count(v.number)) continue;
    const bool in_use = std::any_of(loaded_.begin(), loaded_.end(), [&](const ExpertKey& k) { return key_slot(k) == slot; });
    if (!in_use) v = Version{};
  }
}

std::shared_ptr<const LayerSource> ExpertStore::source_of(uint64_t version) {
  std::string ref;
  {
    std::shared_lock lock(mutex_);
    if (!slot_holds_locked(version)) {
      throw ServiceError(wire::ErrorCode::INTERNAL, "weight version " + std::to_string(version) + " is not known here");
    }
    const Version& v = slots_[version_slot(version)];
    if (v.source) return v.source;
    ref = v.ref;
  }
  std::shared_ptr<const LayerSource> opened;
  try {
    opened = open_layer_source(ModelRef::parse(ref));
  } catch (const std::exception& e) {
    throw ServiceError(wire::ErrorCode::INTERNAL,
                       "cannot open the weights of version " + std::to_string(version) + " at " + ref + ": " + e.what());
  }
  const ModelSpec& want = model()->spec();
  const ModelSpec& got = opened->spec();
  if (got.family != want.family || got.hidden_size != want.hidden_size ||
      got.experts_per_layer() != want.experts_per_layer() || got.moe_layers != want.moe_layers ||
      got.moe_intermediate_size != want.moe_intermediate_size) {
    throw ServiceError(wire::ErrorCode::INTERNAL, "weight version " + std::to_string(version) + " at " + ref +
                                                      " does not have the shapes of the model this worker serves");
  }
  std::unique_lock lock(mutex_);
  Version& v = slots_[version_slot(version)];
  if (v.number == version && !v.source) v.source = opened;
  return opened;
}

void ExpertStore::check_expert(ExpertKey key) const {
  auto source = model();
  const ModelSpec& spec = source->spec();
  if (!spec.is_moe_layer(key.layer)) {
    throw ServiceError(wire::ErrorCode::UNKNOWN_LAYER, "layer " + std::to_string(key.layer) +
                                                           " is not an MoE layer of this model (MoE layers: " +
                                                           moe_layer_list(spec) + ")");
  }
  if (key.expert < 0 || key.expert >= spec.experts_per_layer()) {
    throw ServiceError(wire::ErrorCode::BAD_REQUEST, "expert id " + std::to_string(key.expert) + " of layer " +
                                                         std::to_string(key.layer) + " is outside 0.." +
                                                         std::to_string(spec.experts_per_layer() - 1));
  }
}

std::vector<ExpertKey> ExpertStore::load(const std::set<ExpertKey>& experts, uint64_t version) {
  for (const ExpertKey& key : experts) check_expert(key);
  std::vector<ExpertKey> loaded_now;
  std::shared_ptr<const LayerSource> source;
  for (const ExpertKey& key : experts) {
    if (has(key, version)) continue;
    if (!source) source = source_of(version);
    ExpertWeights weights;
    try {
      weights = source->expert_weights(key.layer, key.expert);
      backend_->load_expert(backend_key(key, version), weights.view);
    } catch (const std::exception& e) {
      throw ServiceError(wire::ErrorCode::INTERNAL, "cannot load " + expert_name(key) + " (weight version " +
                                                        std::to_string(version) + "): " + e.what());
    }
    mark_loaded(backend_key(key, version), std::move(weights));
    loaded_now.push_back(key);
  }
  return loaded_now;
}

void ExpertStore::load_weights(ExpertKey key, uint64_t version, ExpertWeights weights) {
  check_expert(key);
  if (!holds_version(version)) {
    throw ServiceError(wire::ErrorCode::INTERNAL, "cannot load streamed " + expert_name(key) + ": weight version " +
                                                      std::to_string(version) + " is not known here");
  }
  if (has(key, version)) return;
  // Streamed weights carry the matrices only: what the expert computes comes from this worker's spec.
  const ModelSpec& spec = model()->spec();
  weights.view.math = spec.math_of(key.expert);
  if (spec.expert_biases() && spec.fused_expert(key.expert) && !weights.view.has_biases())
    throw ServiceError(wire::ErrorCode::INTERNAL, "cannot load streamed " + expert_name(key) + ": " +
                                                      family_name(spec.family) + " experts have biases, which weight "
                                                      "streaming does not carry (run the workers on shared storage)");
  try {
    backend_->load_expert(backend_key(key, version), weights.view);
  } catch (const std::exception& e) {
    throw ServiceError(wire::ErrorCode::INTERNAL, "cannot load streamed " + expert_name(key) + ": " + e.what());
  }
  mark_loaded(backend_key(key, version), std::move(weights));
}

void ExpertStore::mark_loaded(ExpertKey backend, ExpertWeights weights) {
  if (retain_weights_) weights = without_f16(std::move(weights));
  std::unique_lock lock(mutex_);
  loaded_.insert(backend);
  if (retain_weights_) retained_[backend] = std::move(weights);
}

std::optional<ExpertWeights> ExpertStore::retained(ExpertKey key, uint64_t version) const {
  std::shared_lock lock(mutex_);
  if (!slot_holds_locked(version)) return std::nullopt;
  auto it = retained_.find(backend_key(key, version));
  if (it == retained_.end()) return std::nullopt;
  return it->second;
}

void ExpertStore::unload(const std::set<ExpertKey>& backend_keys) {
  for (const ExpertKey& key : backend_keys) {
    {
      std::unique_lock lock(mutex_);
      if (!loaded_.erase(key)) continue;
      retained_.erase(key);
    }
    backend_->unload_expert(key);
  }
}

bool ExpertStore::has(ExpertKey key, uint64_t version) const {
  std::shared_lock lock(mutex_);
  return slot_holds_locked(version) && loaded_.count(backend_key(key, version)) != 0;
}

std::set<ExpertKey> ExpertStore::loaded() const {
  std::shared_lock lock(mutex_);
  return loaded_;
}

std::set<ExpertKey> ExpertStore::loaded_in(uint64_t version) const {
  std::shared_lock lock(mutex_);
  std::set<ExpertKey> out;
  if (!slot_holds_locked(version)) return out;
  for (const ExpertKey& key : loaded_) {
    if (key_slot(key) == version_slot(version)) out.insert(model_key(key));
  }
  return out;
}

}  // namespace moe
