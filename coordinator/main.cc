// moe-coordinator: parses the flags, starts the CoordinatorService, prints "moe-coordinator listening on
// HOST:PORT", and serves until SIGINT / SIGTERM (and SIGUSR1 under mpirun), which it answers in every phase
// (while loading a model too: runtime/bootstrap/stop_signal_watch.h). Launched by mpirun, it tells every worker of the job its
// address through MPI (runtime/bootstrap), and listens on the host's address (port 7400) when --listen is
// not given.
#include <csignal>
#include <cstdio>
#include <iostream>
#include <optional>
#include <sstream>

#include <CLI/CLI.hpp>

#include "coordinator/coordinator_flags.h"
#include "coordinator/coordinator_log.h"
#include "coordinator/coordinator_service.h"
#include "runtime/bootstrap/daemon_startup.h"
#include "runtime/bootstrap/host_address.h"
#include "runtime/bootstrap/launch_detection.h"
#include "runtime/bootstrap/mpi_bootstrap.h"
#include "runtime/bootstrap/stop_signal_watch.h"

int main(int argc, char** argv) {
  moe::CoordinatorConfig config;
  CLI::App app{"moe-coordinator: membership, placement and epochs of a moe-cluster"};
  moe::add_coordinator_flags(app, config);
  bool check_config = false;
  moe::add_check_config_flag(app, check_config);
  const bool under_mpi = moe::launched_by_mpi();
  try {
    app.parse(argc, argv);
    if (under_mpi && app.get_option("--listen")->count() == 0) config.listen = moe::host_address() + ":7400";
    moe::finish_coordinator_config(config);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (check_config) {
    moe::print_effective_config(app, "moe-coordinator", std::cout);
    return 0;
  }

  // Block the stop signals in every thread the service starts; the main thread waits for them.
  sigset_t signals = moe::block_stop_signals(under_mpi);
  moe::StopSignalWatch stop_signal(signals, [](int signal) {
    moe::coordinator_log(std::string("stopping on signal ") + moe::stop_signal_name(signal) + " while starting");
  });

  std::optional<moe::MpiBootstrap> mpi;
  try {
    if (under_mpi) mpi.emplace(moe::LaunchRole::coordinator);
    std::optional<moe::CoordinatorService> service;
    try {
      service.emplace(config);
    } catch (const std::exception& e) {
      if (mpi) mpi->publish_coordinator_failure(e.what());
      throw;
    }
    if (mpi) mpi->publish_coordinator(service->address());
    std::printf("moe-coordinator listening on %s\n", service->address().c_str());
    std::fflush(stdout);
    stop_signal.serving();
    const int received = stop_signal.wait();
    moe::coordinator_log(std::string("stopping on signal ") + moe::stop_signal_name(received));
    service->stop();
  } catch (const std::exception& e) {
    moe::coordinator_log(std::string("fatal: ") + e.what());
    return 1;  // under mpirun the bootstrap aborts the job
  }
  if (mpi) mpi->finish();
  return 0;
}
