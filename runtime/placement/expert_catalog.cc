// expert_catalog: the experts of a model and their weight bytes.
#include "runtime/placement/expert_catalog.h"

#include <algorithm>

#include "runtime/placement/placement_check.h"
#include "runtime/placement/placement_error.h"

namespace moe {

uint64_t ExpertCatalog::bytes_of(ExpertKey key) const {
  auto it = std::lower_bound(experts.begin(), experts.end(), key,
                             [](const CatalogExpert& e, ExpertKey k) { return e.key < k; });
  if (it == experts.end() || !(it->key == key)) {
    throw PlacementError("expert " + expert_name(key) + " is not an expert of the model");
  }
  return it->bytes;
}

ExpertCatalog expert_catalog(const ModelSpec& spec, size_t bytes_per_param) {
  ExpertCatalog catalog;
  for (int32_t layer : spec.moe_layers) {
    for (int32_t expert = 0; expert < spec.experts_per_layer(); ++expert) {
      const uint64_t params = 3ull * static_cast<uint64_t>(spec.hidden_size) *
                              static_cast<uint64_t>(spec.intermediate_of(expert));
      catalog.experts.push_back({{layer, expert}, params * bytes_per_param});
    }
  }
  return catalog;
}

}  // namespace moe
