// Weight versions on a worker (moectl update-weights): while an update rolls out a worker holds two
// versions of its experts, the one it serves and the one being prepared. Both live in the one
// ExpertBackend, told apart by the layer number of the backend's key: version v's experts of layer L are
// the backend's layer L + slot(v) * kVersionLayerStride, with slot(v) alternating between 0 and 1
// (version 1, the first, is slot 0: the keys of a cluster that never updated are the plain layers).
// Two live versions never share a slot (the coordinator runs one update at a time and the old version
// is released before the next one starts), and ExpertStore checks which version a slot holds.
#pragma once

#include <cstdint>

#include "kernels/expert_backend.h"

namespace moe {

constexpr int32_t kVersionLayerStride = 1 << 20;  // above any layer number a model may have

inline int32_t version_slot(uint64_t version) { return static_cast<int32_t>((version + 1) & 1); }

// The backend's key of `key` (a model expert) in `version`.
inline ExpertKey backend_key(ExpertKey key, uint64_t version) {
  return {key.layer + version_slot(version) * kVersionLayerStride, key.expert};
}

// The model expert a backend key stands for, and its slot.
inline ExpertKey model_key(ExpertKey backend) { return {backend.layer % kVersionLayerStride, backend.expert}; }
inline int32_t key_slot(ExpertKey backend) { return backend.layer / kVersionLayerStride; }

}  // namespace moe
