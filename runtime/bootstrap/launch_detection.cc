// Detection of an MPI launch from the launcher's environment variables (see launch_detection.h).
#include "runtime/bootstrap/launch_detection.h"

#include <cstdlib>

namespace moe {

std::string mpi_launch_evidence() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"}) {
    if (const char* value = std::getenv(name)) return std::string(name) + "=" + value;
  }
  return "";
}

bool launched_by_mpi() { return !mpi_launch_evidence().empty(); }

}  // namespace moe
