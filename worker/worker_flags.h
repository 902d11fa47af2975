// The command line of moe-worker: binds every WorkerOptions field to a flag and its MOE_* environment
// variable (CLI11 ->envname), and checks the values that CLI11 cannot.
#pragma once

#include <CLI/App.hpp>

#include "worker/worker_options.h"

namespace moe {

void add_worker_flags(CLI::App& app, WorkerOptions& options);

// Throws std::invalid_argument naming the flag and value: bad HOST:PORT, unknown backend, zero bounds.
void check_worker_options(const WorkerOptions& options);

}  // namespace moe
