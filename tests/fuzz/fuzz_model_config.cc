// Fuzz target: config.json parsing (runtime/model/model_spec.*). The input is JSON text. parse_model_spec
// either throws ModelError (never another exception) or returns a spec that validate_model_spec accepts;
// such a spec's tensor names are built, and when model_spec_to_config can express it, the config it
// writes must parse back to the same spec.
#include <cstddef>
#include <cstdint>

#include <nlohmann/json.hpp>

#include "runtime/model/model_error.h"
#include "runtime/model/model_spec.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

bool same_spec(const moe::ModelSpec& a, const moe::ModelSpec& b) {
  return a.family == b.family && a.hidden_size == b.hidden_size && a.moe_intermediate_size == b.moe_intermediate_size &&
         a.num_experts == b.num_experts && a.top_k == b.top_k && a.norm_topk_prob == b.norm_topk_prob &&
         a.n_group == b.n_group && a.topk_group == b.topk_group && a.routed_scaling_factor == b.routed_scaling_factor &&
         a.has_shared_expert == b.has_shared_expert && a.shared_intermediate_size == b.shared_intermediate_size &&
         a.shared_expert_gated == b.shared_expert_gated && a.num_hidden_layers == b.num_hidden_layers &&
         a.moe_layers == b.moe_layers;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nlohmann::json config = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded()) return 0;
  moe::ModelSpec spec;
  try {
    spec = moe::parse_model_spec(config, "fuzz/config.json");
  } catch (const moe::ModelError&) {
    return 0;
  }
  try {
    moe::validate_model_spec(spec);
  } catch (const moe::ModelError& e) {
    FUZZ_CHECK(false, "parse_model_spec returned a spec that fails validation: %s", e.what());
  }
  // A few names per layer (bounded: a config may announce millions of experts).
  for (size_t i = 0; i < spec.moe_layers.size() && i < 4; ++i) {
    int32_t layer = spec.moe_layers[i];
    spec.require_moe_layer(layer);
    (void)spec.router_weight_name(layer);
    for (int32_t e : {0, spec.num_experts - 1, spec.experts_per_layer() - 1})
      (void)spec.expert_weight_name(layer, e, moe::ExpertProj::Down);
  }
  nlohmann::json written;
  try {
    written = moe::model_spec_to_config(spec);
  } catch (const moe::ModelError&) {
    return 0;  // a layer set the family's config keys cannot express
  }
  moe::ModelSpec again;
  try {
    again = moe::parse_model_spec(written, "fuzz/written.json");
  } catch (const moe::ModelError& e) {
    FUZZ_CHECK(false, "model_spec_to_config wrote a config that does not parse: %s", e.what());
  }
  FUZZ_CHECK(same_spec(spec, again), "config round trip changed the spec: %s", written.dump().c_str());
  return 0;
}
