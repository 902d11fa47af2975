// Whether this process was started by an MPI launcher (mpirun / mpiexec / srun with PMI), told by the
// environment variables those launchers set.
#pragma once

#include <string>

namespace moe {

// True when one of OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_RANK or PMI_SIZE is set.
bool launched_by_mpi();

// The variable that gave it away ("OMPI_COMM_WORLD_SIZE=4"), or "" when not launched by MPI.
std::string mpi_launch_evidence();

}  // namespace moe
