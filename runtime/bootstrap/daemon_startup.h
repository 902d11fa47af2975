// What moe-coordinator and moe-worker do alike before they serve: print the effective configuration for
// --check-config (the cluster token hidden), and block the stop signals so that only the main thread,
// in sigwait, receives them.
#pragma once

#include <csignal>
#include <ostream>
#include <string>

namespace CLI {
class App;
}

namespace moe {

// The --check-config flag both daemons offer (sets `check_config`).
void add_check_config_flag(CLI::App& app, bool& check_config);

// "# NAME effective config ..." then every option as CLI11 writes a config file; a set cluster token
// prints as "(set, hidden)".
void print_effective_config(const CLI::App& app, const std::string& name, std::ostream& out);

// Blocks SIGINT and SIGTERM (and SIGUSR1 under mpirun, which forwards it as the clean stop of a job) in
// this thread and every thread started after; ignores SIGPIPE. Returns the set to sigwait on.
sigset_t block_stop_signals(bool under_mpi);

// "SIGTERM", "SIGINT", "SIGUSR1" or the number.
std::string stop_signal_name(int signal);

}  // namespace moe
