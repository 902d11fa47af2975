// One line per coordinator event to stderr, prefixed "moe-coordinator: ".
#pragma once

#include <string>

namespace moe {

void coordinator_log(const std::string& line);

}  // namespace moe
