// moectl: the command-line tool of moe-cluster. Each subcommand lives in its own cmd_*.cc and registers
// itself here; every error ends as one line on stderr and a non-zero exit status.
#include <CLI/CLI.hpp>

#include <exception>
#include <iostream>

#include "kernels/cpu/openblas_spin.h"
#include "cli/commands.h"

int main(int argc, char** argv) {
  moe::ensure_short_openblas_spin(argv);  // before any BLAS thread exists; re-executes once
  CLI::App app{"moectl: run, benchmark and operate moe-cluster MoE layers"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every subcommand");
  std::function<int()> action;
  moe::cli::register_forward(app, action);
  moe::cli::register_bench(app, action);
  moe::cli::register_cluster_commands(app, action);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    return action ? action() : 0;
  } catch (const std::exception& e) {
    std::cerr << "moectl: error: " << e.what() << "\n";
    return 1;
  }
}
