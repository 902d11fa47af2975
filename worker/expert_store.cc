// Expert loading and bookkeeping (see expert_store.h).
#include "worker/expert_store.h"

#include <mutex>
#include <stdexcept>

#include "worker/expert_copy.h"
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

void ExpertStore::set_model(std::shared_ptr<const LayerSource> source, const std::string& source_ref) {
  std::unique_lock lock(mutex_);
  if (source_) {
    if (source_ref == source_ref_) return;
    throw std::runtime_error("the coordinator now serves model '" + source_ref + "', this worker loaded '" +
                             source_ref_ + "': restart the worker to change models");
  }
  source_ = std::move(source);
  source_ref_ = source_ref;
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

std::vector<ExpertKey> ExpertStore::load(const std::set<ExpertKey>& experts) {
  for (const ExpertKey& key : experts) check_expert(key);
  auto source = model();
  std::vector<ExpertKey> loaded_now;
  for (const ExpertKey& key : experts) {
    if (has(key)) continue;
    ExpertWeights weights;
    try {
      weights = source->expert_weights(key.layer, key.expert);
      backend_->load_expert(key, weights.view);
    } catch (const std::exception& e) {
      throw ServiceError(wire::ErrorCode::INTERNAL, "cannot load " + expert_name(key) + ": " + e.what());
    }
    mark_loaded(key, std::move(weights));
    loaded_now.push_back(key);
  }
  return loaded_now;
}

void ExpertStore::load_weights(ExpertKey key, ExpertWeights weights) {
  check_expert(key);
  if (has(key)) return;
  // Streamed weights carry the matrices only: what the expert computes comes from this worker's spec.
  const ModelSpec& spec = model()->spec();
  weights.view.math = spec.math_of(key.expert);
  if (spec.expert_biases() && spec.fused_expert(key.expert) && !weights.view.has_biases())
    throw ServiceError(wire::ErrorCode::INTERNAL, "cannot load streamed " + expert_name(key) + ": " +
                                                      family_name(spec.family) + " experts have biases, which weight "
                                                      "streaming does not carry (run the workers on shared storage)");
  try {
    backend_->load_expert(key, weights.view);
  } catch (const std::exception& e) {
    throw ServiceError(wire::ErrorCode::INTERNAL, "cannot load streamed " + expert_name(key) + ": " + e.what());
  }
  mark_loaded(key, std::move(weights));
}

void ExpertStore::mark_loaded(ExpertKey key, ExpertWeights weights) {
  if (retain_weights_) weights = without_f16(std::move(weights));
  std::unique_lock lock(mutex_);
  loaded_.insert(key);
  if (retain_weights_) retained_[key] = std::move(weights);
}

std::optional<ExpertWeights> ExpertStore::retained(ExpertKey key) const {
  std::shared_lock lock(mutex_);
  auto it = retained_.find(key);
  if (it == retained_.end()) return std::nullopt;
  return it->second;
}

void ExpertStore::unload(const std::set<ExpertKey>& experts) {
  for (const ExpertKey& key : experts) {
    {
      std::unique_lock lock(mutex_);
      if (!loaded_.erase(key)) continue;
      retained_.erase(key);
    }
    backend_->unload_expert(key);
  }
}

bool ExpertStore::has(ExpertKey key) const {
  std::shared_lock lock(mutex_);
  return loaded_.count(key) != 0;
}

std::set<ExpertKey> ExpertStore::loaded() const {
  std::shared_lock lock(mutex_);
  return loaded_;
}

}  // namespace moe
