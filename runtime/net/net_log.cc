// Transport log lines (see net_log.h): one write per line so lines from many threads do not interleave.
#include "runtime/net/net_log.h"

#include <cstdio>

namespace moe {

void net_log(const std::string& line) {
  std::string out = "moe-net: " + line + "\n";
  std::fwrite(out.data(), 1, out.size(), stderr);
}

}  // namespace moe
