// MPI_Init / one MPI_Iallgather of fixed-size records / MPI_Finalize (see mpi_bootstrap.h). Built without
// MPI (no MOE_HAVE_MPI), the constructor throws "built without MPI" and nothing else can be reached.
#include "runtime/bootstrap/mpi_bootstrap.h"

#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "runtime/bootstrap/host_address.h"
#include "runtime/bootstrap/launch_detection.h"

#ifdef MOE_HAVE_MPI
#include <mpi.h>
#endif

namespace moe {
namespace {

std::string role_name(LaunchRole role) { return role == LaunchRole::coordinator ? "moe-coordinator" : "moe-worker"; }

#ifdef MOE_HAVE_MPI
// What each rank contributes to the exchange: its role, and for the coordinator its address or failure.
constexpr size_t kRecordBytes = 256;
constexpr char kCoordinator = 'C';
constexpr char kWorker = 'W';
constexpr char kAddress = 'A';
constexpr char kFailure = 'F';
constexpr char kNothing = '-';

using Record = std::array<char, kRecordBytes>;

Record make_record(char role, char status, const std::string& text) {
  Record r{};
  r[0] = role;
  r[1] = status;
  std::memcpy(r.data() + 2, text.data(), std::min(text.size(), kRecordBytes - 3));  // stays NUL-terminated
  return r;
}

std::string record_text(const Record& r) { return std::string(r.data() + 2); }

// "0.0.0.0:7400" -> "<host_address()>:7400"; other addresses unchanged.
std::string reachable(const std::string& bound) {
  for (const std::string wildcard : {"0.0.0.0:", "[::]:"}) {
    if (bound.rfind(wildcard, 0) == 0) return host_address() + ":" + bound.substr(wildcard.size());
  }
  return bound;
}

std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  MPI_Error_string(code, text, &length);
  return std::string(text, static_cast<size_t>(length));
}

// Every rank's record, in rank order. Polls MPI_Test with short sleeps, so ranks waiting for a slow
// coordinator (loading a model) do not spin a core each.
std::vector<Record> exchange(const Record& mine, int size) {
  std::vector<Record> all(static_cast<size_t>(size));
  MPI_Request request;
  int rc = MPI_Iallgather(mine.data(), kRecordBytes, MPI_CHAR, all.data(), kRecordBytes, MPI_CHAR, MPI_COMM_WORLD,
                          &request);
  if (rc != MPI_SUCCESS) throw BootstrapError("MPI_Iallgather of the bootstrap records failed: " + mpi_error_text(rc));
  for (int done = 0; !done;) {
    rc = MPI_Test(&request, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) throw BootstrapError("MPI_Test of the bootstrap exchange failed: " + mpi_error_text(rc));
    if (!done) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return all;
}
#endif

}  // namespace

bool bootstrap_has_mpi() {
#ifdef MOE_HAVE_MPI
  return true;
#else
  return false;
#endif
}

#ifdef MOE_HAVE_MPI

MpiBootstrap::MpiBootstrap(LaunchRole role) : role_(role) {
  int rc = MPI_Init(nullptr, nullptr);
  if (rc != MPI_SUCCESS) throw BootstrapError(role_name(role) + ": MPI_Init failed: " + mpi_error_text(rc));
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
}

MpiBootstrap::~MpiBootstrap() {
  if (finished_) {
    MPI_Finalize();
    std::fprintf(stderr, "%s: MPI finalized (rank %d of %d)\n", role_name(role_).c_str(), rank_, size_);
  } else {
    std::fprintf(stderr, "%s: aborting the MPI job (rank %d of %d failed)\n", role_name(role_).c_str(), rank_, size_);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
}

void MpiBootstrap::publish_coordinator(const std::string& bound_address) {
  if (exchanged_) throw BootstrapError("the MPI bootstrap exchange was already made by rank " + std::to_string(rank_));
  exchanged_ = true;
  const std::vector<Record> all = exchange(make_record(kCoordinator, kAddress, reachable(bound_address)), size_);
  for (int r = 0; r < size_; ++r) {
    if (r != rank_ && all[static_cast<size_t>(r)][0] == kCoordinator) {
      throw BootstrapError("two moe-coordinator processes in one mpirun job: ranks " + std::to_string(rank_) + " and " +
                           std::to_string(r) + "; start exactly one (-np 1 moe-coordinator)");
    }
  }
}

void MpiBootstrap::publish_coordinator_failure(const std::string& why) {
  if (exchanged_) return;  // the workers already have an address; nothing more can be told
  exchanged_ = true;
  exchange(make_record(kCoordinator, kFailure, why), size_);
  finished_ = true;  // every rank now knows and ends too: finalize together instead of aborting
}

std::optional<std::string> MpiBootstrap::await_coordinator() {
  if (exchanged_) throw BootstrapError("the MPI bootstrap exchange was already made by rank " + std::to_string(rank_));
  exchanged_ = true;
  const std::vector<Record> all = exchange(make_record(kWorker, kNothing, ""), size_);
  std::optional<std::string> address;
  int coordinator_rank = -1;
  for (int r = 0; r < size_; ++r) {
    const Record& record = all[static_cast<size_t>(r)];
    if (record[0] != kCoordinator) continue;
    if (coordinator_rank >= 0) {
      throw BootstrapError("two moe-coordinator processes in one mpirun job: ranks " + std::to_string(coordinator_rank) +
                           " and " + std::to_string(r) + "; start exactly one (-np 1 moe-coordinator)");
    }
    coordinator_rank = r;
    if (record[1] == kFailure) {
      finished_ = true;  // the coordinator ends the job on purpose; finalize with it (see above)
      throw BootstrapError("the moe-coordinator (rank " + std::to_string(r) + ") failed to start: " + record_text(record));
    }
    address = record_text(record);
  }
  return address;
}

#else  // built without MPI

MpiBootstrap::MpiBootstrap(LaunchRole role) : role_(role) {
  throw BootstrapError(role_name(role) + " was launched by mpirun (" + mpi_launch_evidence() +
                       ") but built without MPI: install libopenmpi-dev and rebuild, or start it without "
                       "mpirun and give --coordinator");
}
MpiBootstrap::~MpiBootstrap() = default;
void MpiBootstrap::publish_coordinator(const std::string&) {}
void MpiBootstrap::publish_coordinator_failure(const std::string&) {}
std::optional<std::string> MpiBootstrap::await_coordinator() { return std::nullopt; }

#endif

}  // namespace moe
