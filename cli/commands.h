// The subcommands of moectl. Each register_* adds its subcommand to the app and, when that subcommand is
// chosen, sets `action` to the function that runs it (returning the exit status).
#pragma once

#include <functional>

namespace CLI {
class App;
}

namespace moe::cli {

using Action = std::function<int()>;

void register_forward(CLI::App& app, Action& action);           // cmd_forward.cc
void register_bench(CLI::App& app, Action& action);             // cmd_bench.cc
void register_cluster_commands(CLI::App& app, Action& action);  // cmd_cluster.cc: demo, status, ...
void register_bench_cluster(CLI::App& bench, Action& action);   // cmd_cluster.cc: `bench cluster`
void register_bench_balance(CLI::App& bench, Action& action);   // cmd_bench.cc: `bench balance`
void register_bench_faults(CLI::App& bench, Action& action);    // cmd_bench.cc: `bench faults`

}  // namespace moe::cli
