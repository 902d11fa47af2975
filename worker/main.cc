// moe-worker: parses flags (worker_flags.h), runs the WorkerService until SIGTERM or SIGINT, then
// shuts down cleanly (exit 0). Every error ends as one log line and exit status 1. Launched by mpirun,
// it learns the coordinator's address and its name ("rank-N") from MPI (runtime/bootstrap), and
// listens on the host's address when --listen is not given.
#include <CLI/CLI.hpp>

#include <csignal>
#include <cstdio>
#include <exception>
#include <iostream>
#include <sstream>
#include <optional>
#include <string>

#include "kernels/cpu/openblas_spin.h"
#include "runtime/bootstrap/daemon_startup.h"
#include "runtime/bootstrap/host_address.h"
#include "runtime/bootstrap/launch_detection.h"
#include "runtime/bootstrap/mpi_bootstrap.h"
#include "runtime/bootstrap/stop_signal_watch.h"

#include "worker/worker_flags.h"
#include "worker/worker_log.h"
#include "worker/worker_service.h"

int main(int argc, char** argv) {
  moe::ensure_short_openblas_spin(argv);  // before any BLAS thread exists; re-executes once
  moe::WorkerOptions options;
  CLI::App app{"moe-worker: hosts experts of MoE layers and computes them for clients of a moe-cluster"};
  moe::add_worker_flags(app, options);
  bool check_config = false;
  moe::add_check_config_flag(app, check_config);
  const bool under_mpi = moe::launched_by_mpi();
  if (under_mpi) app.get_option("--coordinator")->required(false);  // the MPI bootstrap tells it
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (check_config) {
    try {
      moe::check_worker_options(options);
    } catch (const std::exception& e) {
      moe::worker_log(std::string("error: ") + e.what());
      return 1;
    }
    moe::print_effective_config(app, "moe-worker", std::cout);
    return 0;
  }

  // Every thread started from here on inherits the blocked signals; only sigwait below receives them.
  sigset_t signals = moe::block_stop_signals(under_mpi);
  moe::StopSignalWatch stop_signal(signals, [](int signal) {
    moe::worker_log("received " + moe::stop_signal_name(signal) + " while starting, exiting");
  });

  std::optional<moe::MpiBootstrap> mpi;
  try {
    if (under_mpi) {
      mpi.emplace(moe::LaunchRole::worker);
      const std::optional<std::string> coordinator = mpi->await_coordinator();
      if (options.coordinator.empty()) {
        if (!coordinator)
          throw std::runtime_error("launched by mpirun with no moe-coordinator in the job: give --coordinator");
        options.coordinator = *coordinator;
      }
      if (options.name.empty()) options.name = mpi->worker_name();
      if (app.get_option("--listen")->count() == 0) options.listen = moe::host_address() + ":0";
    }
    moe::check_worker_options(options);
    moe::WorkerService service(options);
    stop_signal.serving();  // before start(): a failing coordinator link signals this process itself
    service.start();
    std::printf("moe-worker listening on %s\n", service.address().c_str());
    std::fflush(stdout);
    const int received = stop_signal.wait();
    if (!service.failed()) moe::worker_log("received " + moe::stop_signal_name(received) + ", shutting down");
    service.stop();
    if (service.failed()) return 1;
  } catch (const std::exception& e) {
    moe::worker_log(std::string("error: ") + e.what());
    return 1;  // under mpirun the bootstrap aborts the job
  }
  if (mpi) mpi->finish();
  return 0;
}
