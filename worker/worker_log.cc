// Writes whole lines with one write() so lines from different threads never interleave.
#include "worker/worker_log.h"

#include <unistd.h>

namespace moe {

void worker_log(const std::string& line) {
  std::string text = "moe-worker[" + std::to_string(::getpid()) + "]: " + line + "\n";
  ssize_t ignored = ::write(STDERR_FILENO, text.data(), text.size());
  (void)ignored;
}

}  // namespace moe
