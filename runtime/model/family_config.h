// The per-family part of reading and writing an HF config.json: which keys name the sizes, which layers
// are MoE, and how the family routes and computes its experts (the ModelSpec fields of model_spec.h).
#pragma once

#include <nlohmann/json_fwd.hpp>

#include "runtime/model/config_reader.h"
#include "runtime/model/model_spec.h"

namespace moe {

// Fills every field but family, hidden_size and num_hidden_layers (already set). Throws ModelError.
void parse_family_config(const ConfigReader& r, ModelSpec& s);
// quantization_config -> s.quant; throws ModelError on a method or layout this runtime cannot read.
void parse_quantization_config(const ConfigReader& r, ModelSpec& s);
// Adds the family's keys to `c` (which holds the common ones), so that parse_family_config reads back
// the same spec. Throws ModelError when the MoE layer set cannot be expressed in the family's keys.
void write_family_config(const ModelSpec& s, nlohmann::json& c);

}  // namespace moe
