// moe-worker: parses flags (worker_flags.h), runs the WorkerService until SIGTERM or SIGINT, then
// shuts down cleanly (exit 0). Every error ends as one log line and exit status 1.
#include <CLI/CLI.hpp>

#include <csignal>
#include <cstdio>
#include <exception>
#include <string>

#include "worker/worker_flags.h"
#include "worker/worker_log.h"
#include "worker/worker_service.h"

int main(int argc, char** argv) {
  moe::WorkerOptions options;
  CLI::App app{"moe-worker: hosts experts of MoE layers and computes them for clients of a moe-cluster"};
  moe::add_worker_flags(app, options);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  // Every thread started from here on inherits the blocked signals; only sigwait below receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  try {
    moe::check_worker_options(options);
    moe::WorkerService service(options);
    service.start();
    std::printf("moe-worker listening on %s\n", service.address().c_str());
    std::fflush(stdout);
    int received = 0;
    sigwait(&signals, &received);
    moe::worker_log(std::string("received ") + (received == SIGTERM ? "SIGTERM" : "SIGINT") + ", shutting down");
    service.stop();
  } catch (const std::exception& e) {
    moe::worker_log(std::string("error: ") + e.what());
    return 1;
  }
  return 0;
}
