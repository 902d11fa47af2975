// One log line per event to stderr, prefixed with the process name and id: "moe-worker[1234]: ...".
#pragma once

#include <string>

namespace moe {

void worker_log(const std::string& line);

}  // namespace moe
