// Start-up of a moe-cluster launched by one mpirun command
// (`mpirun -np 1 moe-coordinator ... : -np 3 moe-worker ...`): MPI_Init, one exchange in which the
// process started as moe-coordinator tells every worker the address it bound (or why it failed), the
// worker's stable name from its rank ("rank-3"), and MPI_Finalize at exit. The daemons talk over their own
// TCP protocol afterwards; MPI is used for nothing else. Every MPI call of the project lives in this file's .cc.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>

namespace moe {

struct BootstrapError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class LaunchRole { coordinator, worker };

// True when moe_bootstrap was built with MPI (find_package(MPI) found it).
bool bootstrap_has_mpi();

class MpiBootstrap {
 public:
  // MPI_Init. Throws BootstrapError when the library was built without MPI ("built without MPI"), or
  // when MPI_Init fails. Call it after blocking the stop signals, so MPI's own threads inherit the mask.
  explicit MpiBootstrap(LaunchRole role);
  // MPI_Finalize when finish() was called (a clean stop); otherwise MPI_Abort(1), which ends the whole
  // job as mpirun does for any rank that fails. Waits in MPI_Finalize until every rank finalizes.
  ~MpiBootstrap();
  MpiBootstrap(const MpiBootstrap&) = delete;
  MpiBootstrap& operator=(const MpiBootstrap&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  // The worker's stable name: "rank-" + its rank in MPI_COMM_WORLD.
  std::string worker_name() const { return "rank-" + std::to_string(rank_); }

  // The one exchange (collective: every rank makes exactly one of these calls, once).
  // Coordinator: tells every rank its bound "host:port"; a wildcard host (0.0.0.0, [::]) is replaced by
  // host_address(). Throws BootstrapError when another rank also is a coordinator.
  void publish_coordinator(const std::string& bound_address);
  // Coordinator that could not start: the workers' await_coordinator throws with `why`, and every rank
  // then finalizes (no MPI_Abort) and exits 1, so each one's log line survives.
  void publish_coordinator_failure(const std::string& why);
  // Worker: waits (sleeping, not spinning) for the coordinator's address. nullopt when no rank of the
  // job is a coordinator. Throws BootstrapError when the coordinator failed or there are several.
  std::optional<std::string> await_coordinator();

  // Marks a clean stop: the destructor finalizes instead of aborting.
  void finish() { finished_ = true; }

 private:
  LaunchRole role_;
  int rank_ = 0;
  int size_ = 1;
  bool exchanged_ = false;
  bool finished_ = false;
};

}  // namespace moe
