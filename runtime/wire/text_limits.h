// Length caps on the text fields a peer can send (issue 12: "length caps on every text field"), checked
// where each field is read, whoever sent it: registration (name, address, backend), placements (worker
// addresses), prepare sources, model info (specJson, name, source) and error messages. The cluster token
// has its own cap (cluster_auth.h). The `clusterToken` fields inside message structs are unused (the
// envelope's is checked) and never read. A frame is bounded as a whole by FrameLimits; these caps keep a
// field from being copied (into logs, strings, exceptions) at up to that size.
#pragma once

#include <cstddef>
#include <string>

#include "runtime/wire/moe.capnp.h"

namespace moe {

constexpr size_t kMaxNameBytes = 256;          // a worker's name, a backend's, a model's
constexpr size_t kMaxAddressBytes = 256;       // "host:port"
constexpr size_t kMaxSourceBytes = 4096;       // a model's weight source: "hf:DIR", "synthetic:PRESET:SEED"
constexpr size_t kMaxSpecJsonBytes = 1 << 20;  // a model config as JSON
constexpr size_t kMaxErrorMessageBytes = 4096; // an error reply's message (longer ones are cut, not refused)

// Throws WireError "<what> is N bytes, at most MAX are accepted" when `text` is longer than `max`.
void check_text_length(const std::string& what, capnp::Text::Reader text, size_t max);

// check_text_length on every text field of a modelInfo (specJson, name, source); `where` names the sender.
void check_model_info_text(wire::ModelInfo::Reader info, const std::string& where);

}  // namespace moe
