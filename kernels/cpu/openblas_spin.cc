// Re-executes the process with a short OpenBLAS thread spin (see openblas_spin.h).
#include "kernels/cpu/openblas_spin.h"

#include <unistd.h>

#include <cstdlib>
#include <string>

namespace moe {

void ensure_short_openblas_spin(char** argv, int log2_cycles) {
  if (std::getenv("OPENBLAS_THREAD_TIMEOUT") != nullptr) return;
  const std::string value = std::to_string(log2_cycles);
  if (setenv("OPENBLAS_THREAD_TIMEOUT", value.c_str(), 1) != 0) return;
  execv("/proc/self/exe", argv);
  // execv returned: it failed. Carry on with OpenBLAS's default spin; children still inherit the setting.
}

}  // namespace moe
