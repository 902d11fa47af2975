// Shared start-up steps of the daemons (see daemon_startup.h).
#include "runtime/bootstrap/daemon_startup.h"

#include <CLI/CLI.hpp>

#include <pthread.h>

#include <sstream>

namespace moe {

void add_check_config_flag(CLI::App& app, bool& check_config) {
  app.add_flag("--check-config", check_config,
               "parse and validate the flags and MOE_* variables, print the effective config, exit 0 without binding");
}

void print_effective_config(const CLI::App& app, const std::string& name, std::ostream& out) {
  out << "# " << name << " effective config (flags, MOE_* variables and defaults)\n";
  std::istringstream lines(app.config_to_str(true, false));
  for (std::string line; std::getline(lines, line);) {
    const bool secret = line.rfind("cluster-token=", 0) == 0 && line != "cluster-token=\"\"";
    out << (secret ? "cluster-token=\"(set, hidden)\"" : line) << "\n";
  }
}

sigset_t block_stop_signals(bool under_mpi) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  if (under_mpi) sigaddset(&signals, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  return signals;
}

std::string stop_signal_name(int signal) {
  switch (signal) {
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGUSR1: return "SIGUSR1";
  }
  return "signal " + std::to_string(signal);
}

}  // namespace moe
