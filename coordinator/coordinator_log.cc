// coordinator_log: whole lines, so concurrent events never interleave inside a line.
#include "coordinator/coordinator_log.h"

#include <cstdio>

namespace moe {

void coordinator_log(const std::string& line) {
  std::string out = "moe-coordinator: " + line + "\n";
  std::fwrite(out.data(), 1, out.size(), stderr);
  std::fflush(stderr);
}

}  // namespace moe
