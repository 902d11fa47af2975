// One log line to stderr for transport events (bad frames, broken connections), prefixed "moe-net: ".
#pragma once

#include <string>

namespace moe {

void net_log(const std::string& line);

}  // namespace moe
