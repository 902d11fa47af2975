// Length caps on peers' text fields (see text_limits.h).
#include "runtime/wire/text_limits.h"

#include "runtime/wire/wire_error.h"

namespace moe {

void check_text_length(const std::string& what, capnp::Text::Reader text, size_t max) {
  if (text.size() > max) {
    throw WireError(what + " is " + std::to_string(text.size()) + " bytes, at most " + std::to_string(max) +
                    " are accepted");
  }
}

void check_model_info_text(wire::ModelInfo::Reader info, const std::string& where) {
  check_text_length(where + " modelInfo.specJson", info.getSpecJson(), kMaxSpecJsonBytes);
  check_text_length(where + " modelInfo.name", info.getName(), kMaxNameBytes);
  check_text_length(where + " modelInfo.source", info.getSource(), kMaxSourceBytes);
}

}  // namespace moe
