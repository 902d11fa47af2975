// moe-coordinator: parses the flags, starts the CoordinatorService, and serves until SIGINT / SIGTERM.
#include <csignal>
#include <iostream>

#include <CLI/CLI.hpp>

#include "coordinator/coordinator_flags.h"
#include "coordinator/coordinator_log.h"
#include "coordinator/coordinator_service.h"

int main(int argc, char** argv) {
  moe::CoordinatorConfig config;
  CLI::App app{"moe-coordinator: membership, placement and epochs of a moe-cluster"};
  moe::add_coordinator_flags(app, config);
  try {
    app.parse(argc, argv);
    moe::finish_coordinator_config(config);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  // Block the stop signals in every thread the service starts; the main thread waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  try {
    moe::CoordinatorService service(config);
    int received = 0;
    sigwait(&signals, &received);
    moe::coordinator_log(std::string("stopping on signal ") + (received == SIGINT ? "SIGINT" : "SIGTERM"));
    service.stop();
  } catch (const std::exception& e) {
    moe::coordinator_log(std::string("fatal: ") + e.what());
    return 1;
  }
  return 0;
}
